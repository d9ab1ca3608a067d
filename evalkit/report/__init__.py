"""Tables (Markdown, LaTeX, CSV) built from run summaries."""
