"""The package layout: no import cycles, the library never imports the CLI, `evalkit.evaluate` is the
library entry point, and every usage error of every command is one line with exit code 2."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "evalkit"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_script_block(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.If)
        and "__main__" in ast.unparse(node.test)
        and "__name__" in ast.unparse(node.test)
    )


def _library_nodes(tree: ast.Module):
    todo = [n for n in tree.body if not _is_script_block(n)]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _import_graph() -> dict[str, set[str]]:
    """Every evalkit import of every module, including those inside functions; importing one's own parent
    package is not an edge (Python initialises parents first), nor is a script block
    (`if __name__ == "__main__":`, which runs only when the module is the program)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str | None] = set()
        for node in _library_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(resolve(a.name) for a in node.names if a.name.split(".")[0] == "evalkit")
            elif (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").startswith("evalkit")
            ):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    edges.add(full if full in modules else resolve(node.module))
        graph[name] = {e for e in edges if e and e != name and not name.startswith(e + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_the_package():
    assert _cycles(_import_graph()) == []


def test_only_the_cli_imports_the_cli():
    offenders = [
        name
        for name, edges in _import_graph().items()
        if not (name == "evalkit.cli" or name.startswith("evalkit.cli."))
        and any(e == "evalkit.cli" or e.startswith("evalkit.cli.") for e in edges)
    ]
    assert offenders == []


def test_evaluate_is_the_top_level_entry_point_and_imports_no_torch():
    code = (
        "import sys, evalkit\n"
        "from evalkit.evaluator import evaluate\n"
        "assert evalkit.evaluate is evaluate, evalkit.evaluate\n"
        "assert callable(evalkit.evaluate) and evalkit.EvalResult and evalkit.SRROptions\n"
        "assert 'torch' not in sys.modules and 'evalkit.cli' not in sys.modules\n"
        "print('OK')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr


# -- usage errors ---------------------------------------------------------------------------------------
def _commands():
    """(argv prefix, click command) for every leaf command of `evalkit`."""
    import typer.main

    from evalkit.cli import app

    root = typer.main.get_command(app)
    todo, leaves = [((), root)], []
    while todo:
        path, command = todo.pop()
        subcommands = getattr(command, "commands", None)
        if subcommands:
            todo.extend(((*path, name), sub) for name, sub in subcommands.items())
        else:
            leaves.append((path, command))
    return sorted(leaves, key=lambda leaf: leaf[0])


COMMANDS = _commands()


def _one_line_usage_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: "), err
    return err


def test_every_command_is_checked():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"run", "gen", "score", "merge", "report", "ls", "doctor", "ablate-reward"} <= names
    assert {"data fetch", "data verify", "dvreward decompose", "dvreward score"} <= names


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_misspelt_option_is_one_line_with_the_fix(cli, path, command):
    options = [o for p in command.params for o in p.opts if o.startswith("--") and o != "--help"]
    if not options:  # nothing to suggest: the error still names the option and where help is
        err = _one_line_usage_error(*cli(*path, "--verbose")[::2])
        assert "no such option --verbose" in err and f"evalkit {' '.join(path)} --help" in err
        return
    longest = max(options, key=len)
    typo = longest[:-2] + longest[-1]  # drop the second-to-last letter
    err = _one_line_usage_error(*cli(*path, typo, "x")[::2])
    assert f"did you mean {longest}?" in err and f"evalkit {' '.join(path)} --help" in err


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_bad_values_and_missing_arguments_are_one_line(cli, path, command):
    required = [p for p in command.params if p.required]
    if required:  # nothing given: the first missing one is named, with the usage line
        err = _one_line_usage_error(*cli(*path)[::2])
        assert "missing" in err and f"usage: evalkit {' '.join(path)}" in err
    numbers = [
        p
        for p in command.params
        if p.type_descriptor.annotation in (int, float) and p.opts[0].startswith("--")
    ]
    for param in numbers:  # e.g. --limit abc
        err = _one_line_usage_error(*cli(*path, param.opts[0], "abc")[::2])
        assert "invalid value" in err and param.opts[0] in err


def test_unknown_commands_suggest_the_closest(cli):
    err = _one_line_usage_error(*cli("rnu", "geneval")[::2])
    assert "unknown command 'rnu'; did you mean 'run'?" in err
    err = _one_line_usage_error(*cli("data", "fech", "gedit")[::2])
    assert "did you mean 'fetch'?" in err and "evalkit data --help" in err
    err = _one_line_usage_error(*cli("ls", "models", "tiny-sd3", "extra")[::2])
    assert "unexpected extra argument" in err
