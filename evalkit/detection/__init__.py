"""Object detectors and the colour classifier used by GenEval."""
