"""Installation: every third-party import is declared, and CI runs the README's commands.

The check reads every module's source (``ast``: imports at the top and inside functions), maps
each third-party top-level module to the distribution that installs it
(``importlib.metadata.packages_distributions``) and compares with what rnnlab declares
(``importlib.metadata.requires("rnnlab")``). A distribution of an optional extra may be
imported only inside a function, in a ``try`` whose ``except ImportError`` raises a message
that names the extra's install line (``.[extra]``).
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "rnnlab"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements(dist: str = "rnnlab") -> dict[str, set[str]]:
    """Extra ("" for the runtime requirements) -> normalised distribution names."""
    out: dict[str, set[str]] = {"": set()}
    for line in metadata.requires(dist) or []:
        name = _normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line).group(1))
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", line)
        out.setdefault(extra.group(1) if extra else "", set()).add(name)
    return out


@dataclass(frozen=True)
class Import:
    module: str  # top-level module name
    path: Path
    line: int
    lazy: bool  # inside a function
    guarded_extra: str | None  # the extra named by the except-ImportError message around it


def _guard_extra(handlers: list[ast.ExceptHandler]) -> str | None:
    """The extra that an ``except ImportError`` handler's message names (``.[extra]``)."""
    for handler in handlers:
        names = handler.type
        kinds = names.elts if isinstance(names, ast.Tuple) else [names]
        if not any(isinstance(k, ast.Name) and k.id in ("ImportError", "ModuleNotFoundError")
                   for k in kinds):
            continue
        for node in ast.walk(handler):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found = re.search(r"\.\[([A-Za-z0-9_-]+)\]", node.value)
                if found:
                    return found.group(1)
    return None


def collect_imports(path: Path) -> list[Import]:
    """Every absolute import in one file, with whether it is lazy and which extra guards it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def walk(node: ast.AST, lazy: bool, extra: str | None) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(alias.name.split(".")[0], path, node.lineno, lazy, extra))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(Import(node.module.split(".")[0], path, node.lineno, lazy, extra))
        lazy = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(node, ast.Try):
            guard = _guard_extra(node.handlers) or extra
            for statement in node.body:
                walk(statement, lazy, guard)
            for part in (*node.handlers, *node.orelse, *node.finalbody):
                walk(part, lazy, extra)
            return
        for child in ast.iter_child_nodes(node):
            walk(child, lazy, extra)

    walk(tree, False, None)
    return found


def undeclared(files: list[Path], declared: dict[str, set[str]], own: set[str],
               allowed_extras: set[str] = frozenset()) -> list[str]:
    """One line per import that needs a distribution the declarations do not provide.

    ``allowed_extras``: extras whose distributions count as installed (the test extra for the
    tests' own imports). Any other extra's distribution must sit behind a guarded lazy import.
    """
    to_dist = metadata.packages_distributions()
    runtime = declared.get("", set()) | {d for e in allowed_extras for d in declared.get(e, ())}
    problems = []
    for path in files:
        for imp in collect_imports(path):
            if imp.module in sys.stdlib_module_names or imp.module in own:
                continue
            where = f"{path.relative_to(REPO)}:{imp.line} imports {imp.module!r}"
            dists = {_normalise(d) for d in to_dist.get(imp.module, [])}
            if not dists:
                problems.append(f"{where}, which no installed distribution provides and "
                                "pyproject.toml does not declare")
                continue
            if dists & runtime:
                continue
            extras = sorted(e for e, names in declared.items() if e and dists & names)
            if not extras:
                problems.append(f"{where} (distribution {sorted(dists)}), not declared in "
                                "pyproject.toml")
            elif not imp.lazy or imp.guarded_extra not in extras:
                problems.append(
                    f"{where}, declared only in the extra(s) {extras}: import it inside a "
                    "function, in a try whose except ImportError says `pip install -e "
                    f"'.[{extras[0]}]'`"
                )
    return problems


def python_files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def test_every_import_of_the_package_is_declared():
    problems = undeclared(python_files(PACKAGE), declared_requirements(), own={"rnnlab"})
    assert not problems, "\n".join(problems)


def test_every_import_of_the_tests_and_examples_is_declared():
    own = {"rnnlab"} | {p.stem for p in python_files(REPO / "tests")}
    problems = undeclared(python_files(REPO / "tests", REPO / "examples"),
                          declared_requirements(), own=own, allowed_extras={"test"})
    assert not problems, "\n".join(problems)


def test_the_check_fails_on_an_undeclared_import(tmp_path, monkeypatch):
    # sacrebleu is installed and declared; taken out of the declarations, an import of it at the
    # top of a module, or inside a function, is reported.
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    module = tmp_path / "m.py"
    module.write_text("import os\nimport sacrebleu\n\ndef f():\n    from jiwer import wer\n")
    declared = declared_requirements()
    assert "sacrebleu" in declared[""]
    assert undeclared([module], declared, own=set()) == []
    without = {"": declared[""] - {"sacrebleu", "jiwer"}}
    problems = undeclared([module], without, own=set())
    assert [p.split(" (")[0] for p in problems] == ["m.py:2 imports 'sacrebleu'",
                                                   "m.py:5 imports 'jiwer'"]
    # declared only in an extra: refused at the top of a module, accepted behind a guarded
    # lazy import that names the extra
    extra = {"": without[""], "bleu": {"sacrebleu"}, "wer": {"jiwer"}}
    assert len(undeclared([module], extra, own=set())) == 2
    module.write_text(
        "def f():\n    try:\n        import sacrebleu\n    except ImportError:\n"
        "        raise ImportError(\"pip install -e '.[bleu]'\") from None\n"
    )
    assert undeclared([module], extra, own=set()) == []
    module.write_text("import nonexistent_module_rnnlab_xyz\n")
    assert "no installed distribution" in undeclared([module], declared, own=set())[0]


def test_importing_every_subpackage_needs_only_what_is_declared():
    # importable at all (the static check above says the imports are declared)
    for info in sorted(PACKAGE.rglob("__init__.py")):
        name = ".".join(info.parent.relative_to(REPO).parts)
        assert importlib.util.find_spec(name) is not None
        __import__(name)


def _readme_commands():
    spec = importlib.util.spec_from_file_location("readme_commands",
                                                  REPO / ".ci" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_runs_the_readme_commands_verbatim_in_a_new_venv():
    readme = _readme_commands()
    main, tests = readme.setup_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert main.startswith("pip install torch==2.13.0 && ") and main.endswith("rnnlab compare")
    assert tests.endswith("python -m pytest -q")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m venv" in ci and "readme_commands.py main" in ci
    assert "readme_commands.py tests" in ci and "--system-site-packages" not in ci
    with pytest.raises(ValueError, match="exactly two"):
        readme.setup_commands("## Set up\n```bash\npip install .\n```\n## Next\n")
