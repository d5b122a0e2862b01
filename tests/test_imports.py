"""What imports what: the `bark` command's quick paths load no PyTorch, and bark_cli's modules
import each other in one direction (cli -> longform/pipeline -> generation -> decoding -> models).

Each run happens in a fresh interpreter, since this test process has long imported torch.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bark_cli"

# Runs a command through the app as the `bark` script does, then says whether torch was loaded.
RUN_COMMAND = """
import json, sys
from bark_cli.cli import app
try:
    app(json.loads(sys.argv[1]), prog_name="bark")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("\\n" + json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


def fresh_python(code: str, *args: str, env: dict | None = None, cwd: Path | None = None) -> dict:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env,
                            cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", [
    "bark_cli", "bark_cli.cli", "bark_cli.config", "bark_cli.presets", "bark_cli.catalog", "bark_cli.text",
    "bark_cli.voice", "bark_cli.hub", "bark_cli.weights", "bark_cli.suno", "bark_cli.cloning", "bark_cli.recording",
    "bark_cli.cli.clone", "bark_cli.raybatch"])
def test_importing_loads_no_torch(module):
    code = f"import json, sys, {module}\nprint(json.dumps({{'torch': 'torch' in sys.modules}}))"
    assert fresh_python(code) == {"torch": False}


@pytest.mark.parametrize("args", [
    ["--version"],
    ["--help"],
    ["say", "--help"],
    ["serve", "--help"],
    ["presets", "list", "--model", "bark-cli-tests/not-cached"],
    ["presets", "clone", "--help"],
    ["models", "list"],
], ids=" ".join)
def test_quick_commands_load_no_torch(args, tmp_path):
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "BARK_VOICES_DIR": str(tmp_path / "voices")}
    assert fresh_python(RUN_COMMAND, json.dumps(args), env=env, cwd=tmp_path) == {"code": 0, "torch": False}


def test_clone_help_loads_no_torch_or_resampler(tmp_path):
    code = RUN_COMMAND.replace('"torch": "torch" in sys.modules',
                               '"heavy": sorted({"torch", "soxr"} & set(sys.modules))')
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "BARK_VOICES_DIR": str(tmp_path / "voices")}
    assert fresh_python(code, json.dumps(["presets", "clone", "--help"]), env=env, cwd=tmp_path) == {
        "code": 0, "heavy": []}


HEAVY = ("torch", "fastapi", "starlette", "uvicorn", "av", "prometheus_client", "soxr")
RUN_HEAVY = RUN_COMMAND.replace('"torch": "torch" in sys.modules', f'"heavy": [m for m in {HEAVY!r} if m in sys.modules]')


@pytest.mark.parametrize("args", [["--version"], ["serve", "--help"]], ids=" ".join)
def test_light_commands_load_nothing_of_the_server(args, tmp_path):
    assert fresh_python(RUN_HEAVY, json.dumps(args), cwd=tmp_path) == {"code": 0, "heavy": []}


@pytest.mark.parametrize("env", [
    {"_BARK_COMPLETE": "complete_bash", "COMP_WORDS": "bark say --device ", "COMP_CWORD": "3"},
    {"_BARK_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "bark pre"},
], ids=["bash", "zsh"])
def test_shell_completion_loads_no_torch(env, tmp_path):
    assert fresh_python(RUN_COMMAND, "[]", env=env, cwd=tmp_path) == {"code": 0, "torch": False}


def test_the_script_imports_nothing_of_ours_before_its_signal_guard():
    """The `bark` script imports bark_cli.cli before main() can catch Ctrl-C: that import loads
    no other module of the package than the guard's own (cli/process.py, standard library only),
    so the unguarded moments are Python's own start-up."""
    code = "import json, sys, bark_cli.cli\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'bark_cli')))"
    assert fresh_python(code) == ["bark_cli", "bark_cli.cli", "bark_cli.cli.process"]
    tree = ast.parse((PACKAGE / "cli" / "process.py").read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert top <= set(sys.stdlib_module_names) and not any(
        isinstance(node, ast.ImportFrom) and node.level for node in tree.body)


def test_the_lazy_names_still_arrive():
    import bark_cli

    assert bark_cli.Bark.__module__ == "bark_cli.pipeline"
    assert bark_cli.speak.__module__ == "bark_cli.longform"
    assert bark_cli.SamplingOptions.__module__ == "bark_cli.config"
    assert issubclass(bark_cli.InputError, bark_cli.BarkError)
    assert {"Bark", "Speech", "VoicePrompt", "InputError"} <= set(dir(bark_cli))
    with pytest.raises(AttributeError):
        bark_cli.no_such_name  # noqa: B018


# --- the import graph -------------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(name: str) -> set[str]:
    """Every module `name` imports at run time (at the top or inside functions; not the names
    typing alone needs), relative imports resolved and `from package import module` counted as
    that module."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def part(name: str) -> str:
    """bark_cli.cli.say -> cli; bark_cli.models.gpt -> models; bark_cli -> ''."""
    return name.split(".")[1] if name.count(".") else ""


def edges(condition) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets if condition(a, b))


def test_no_transformers_no_bench_scripts():
    assert edges(lambda a, b: b.split(".")[0] in ("transformers", "bench")) == []
    # bark_cli.bench (a package of one job per module) serves `bark bench` alone
    inside = lambda name: name == "bark_cli.bench" or name.startswith("bark_cli.bench.")  # noqa: E731
    assert edges(lambda a, b: inside(b) and not inside(a) and a != "bark_cli.cli.bench") == []


def test_ray_is_the_ray_runners_alone():
    """Ray is an extra: only bark_cli.raybatch imports it, inside its functions."""
    assert edges(lambda a, b: b.split(".")[0] == "ray" and a != "bark_cli.raybatch") == []
    assert {"ray", "ray.data"} <= GRAPH["bark_cli.raybatch"]


def test_nothing_imports_the_cli():
    # bark_cli.__main__ is `python -m bark_cli`: the command itself.
    outside = lambda a, b: b.startswith("bark_cli.cli") and part(a) not in ("cli", "__main__")  # noqa: E731
    assert edges(outside) == []


CHAIN = ["cli", "longform", "pipeline", "generation", "decoding", "models"]
FEEDERS = {"runtime", "text", "presets", "catalog", "voice", "hub", "weights", "suno", "audio", "batch", "config",
           "errors", "cloning", "recording", "claims"}


def test_imports_run_down_the_chain():
    """cli -> longform/pipeline -> generation -> decoding -> models, never back up; the modules
    that feed the pipeline (and config, errors at the bottom) import nothing of the chain above models."""

    def upward(a: str, b: str) -> bool:
        if not b.startswith("bark_cli.") or part(a) == part(b):
            return False
        if part(a) in CHAIN and part(b) in CHAIN:
            return CHAIN.index(part(a)) > CHAIN.index(part(b))
        return part(a) in FEEDERS and part(b) in set(CHAIN) - {"models"}

    assert edges(upward) == []
    bottom = {"bark_cli.config", "bark_cli.fields", "bark_cli.errors"}
    assert edges(lambda a, b: a in bottom and b.startswith("bark_cli") and b not in ("bark_cli.errors", "bark_cli.fields")) == []


def ours(name: str) -> set[str]:
    return {b for b in GRAPH[name] if b.split(".")[0] == "bark_cli"}


def at_module_level(name: str) -> set[str]:
    """The modules of ours that `name` imports when it is imported (not inside its functions)."""
    found = set()
    for node in ast.parse(MODULES[name].read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            found.update(f"bark_cli.{node.module}" if node.module else f"bark_cli.{alias.name}" for alias in node.names)
    return found


def test_generation_knows_voices_but_not_where_they_come_from():
    """The token loops take a VoicePrompt; nothing under them reaches the Hub, the weight files
    or the presets."""
    below = {b if not b.startswith("bark_cli.models") else "bark_cli.models" for b in ours("bark_cli.generation")}
    assert below == {"bark_cli.config", "bark_cli.decoding", "bark_cli.models", "bark_cli.sampling", "bark_cli.voice"}


def test_voice_hub_and_weights_sit_low():
    """voice.py beside config and errors (audio's atomic write only inside save_voice); hub.py
    on errors alone; the catalog on nothing; weights on the Hub layout alone, and suno.py on hub
    and weights, never the other way."""
    assert at_module_level("bark_cli.voice") == {"bark_cli.config", "bark_cli.errors"}
    assert ours("bark_cli.voice") == {"bark_cli.config", "bark_cli.errors", "bark_cli.audio"}
    assert ours("bark_cli.hub") == {"bark_cli.errors"}
    assert ours("bark_cli.catalog") == set()
    assert ours("bark_cli.weights") - {"bark_cli.models.codec", "bark_cli.models.fine", "bark_cli.models.gpt"} == {
        "bark_cli.config", "bark_cli.errors"}
    assert {"bark_cli.hub", "bark_cli.weights"} <= ours("bark_cli.suno")
    assert "bark_cli.presets" in ours("bark_cli.pipeline") and "bark_cli.checkpoint" not in MODULES


def test_only_the_cli_imports_the_server():
    """The server sits beside the cli, above longform and pipeline: nothing below imports it."""
    assert edges(lambda a, b: b.startswith("bark_cli.server") and part(a) not in ("cli", "server")) == []
    assert edges(lambda a, b: part(a) == "server" and part(b) == "cli") == []


def test_no_import_cycles():
    inside = {name: {b for b in targets if b in MODULES} for name, targets in GRAPH.items()}
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def walk(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(inside[name]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                walk(target, path + [target])
        state[name] = "done"

    for name in sorted(inside):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_every_declared_pytest_marker_is_used():
    """A marker no test carries is dead configuration."""
    import re
    import tomllib

    root = PACKAGE.parent
    declared = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    names = {line.split(":")[0].strip() for line in declared}
    source = "\n".join(path.read_text() for path in (root / "tests").glob("*.py"))
    used = set(re.findall(r"pytest\.mark\.(\w+)", source))
    assert names and names <= used, names - used
