"""The deployment manifests (deploy/), checked without Docker or Kubernetes: what cannot run here is at least
consistent with the code it deploys.

Every YAML file parses; two images from deploy/Dockerfile's two targets, `pipeline` (no engine: the Prefect
server, the workers, the deploy job) and `engine` (the Talks engine), each tagged with pyproject's version
and each used by the services of its role; every `talkmill …`, `talkmill-engine …` and `prefect …` command
in the manifests (and in deploy/README.md) exists with every option it passes; every TALKMILL_* and PREFECT_*
variable is a real setting; the compose topology and the Kubernetes objects are wired together (selectors,
Services, probes on /health at the container port, URLs naming real services and ports, databases and
buckets created where they are used); no secret is committed.
No network, no containers: the only processes started are the real commands' `--help` (`talkmill` and
`talkmill-engine` of this venv, one process each; prefect's CLI, not typer, in one process for all).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
NGINX = DEPLOY / "nginx.conf"
README = DEPLOY / "README.md"

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
SCRIPTS = PYPROJECT["project"]["scripts"]
PACKAGES = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
ENGINE_EXTRA = "engine"
ENGINE_PACKAGE = next(p for p in PACKAGES if Path(p).name == SCRIPTS["talkmill-engine"].split(".")[0])
# The Dockerfile's targets and the image each is built as: the pipeline (no engine) and the engine.
IMAGE_NAMESPACE = "ghcr.io/talkmill/"
IMAGE_REPOS = {"pipeline": f"{IMAGE_NAMESPACE}talkmill", "engine": f"{IMAGE_NAMESPACE}talkmill-engine"}
IMAGES = {target: f"{repo}:{VERSION}" for target, repo in IMAGE_REPOS.items()}
# Who is the engine, by name (not by image): compose services and (k8s workload, container).
ENGINE_SERVICES = {"engine"}
ENGINE_CONTAINERS = {("talkmill-engine", "engine")}
PROGRAMS = ("talkmill", "talkmill-engine", "prefect")
BIN = Path(sys.executable).parent  # the venv's console scripts: talkmill, talkmill-engine
POOL = "talkmill"

# Engine settings another engineer is adding to EngineSettings right now (the PostgreSQL talk store and S3
# results). Accepted from this list until they are fields; once they are, this list changes nothing.
ENGINE_SETTINGS_BEING_ADDED = {"database_url", "results_s3_url"}
# Variables of other programs that the manifests set on purpose (checked against this list, not ignored).
OTHER_VARIABLES = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3",  # boto3, SeaweedFS
    "POSTGRES_PASSWORD", "POSTGRES_PREFECT_PASSWORD", "POSTGRES_ENGINE_PASSWORD",  # postgres image, init script
    "BUCKETS",  # the s3-buckets one-shot
    "PYTHONUNBUFFERED", "PATH", "UV_COMPILE_BYTECODE", "UV_LINK_MODE", "UV_PYTHON_DOWNLOADS",
    "UV_PROJECT_ENVIRONMENT", "ENGINE_RENDER_WORKERS",  # Dockerfile build; a compose interpolation knob
}
SECRET_NAME = re.compile(r"(KEYS?|SECRET|SECRET_ACCESS_KEY|PASSWORD|TOKEN)$")
URL_WITH_PASSWORD = re.compile(r"://[^/@\s]*:[^/@\s]+@")


# ---------------------------------------------------------------------------------------------- loading


def yaml_files() -> list[Path]:
    return sorted([*DEPLOY.glob("*.yaml"), *DEPLOY.glob("*.yml"), *K8S.glob("*.yaml"), *K8S.glob("*.yml")])


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


@cache
def k8s_objects() -> tuple[tuple[str, dict], ...]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return tuple(found)


def k8s(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_objects() if doc.get("kind") == kind}


def pod_specs() -> dict[str, dict]:
    """Workload name → pod spec, for Deployments and Jobs."""
    return {name: doc["spec"]["template"]["spec"] for kind in ("Deployment", "Job") for name, doc in k8s(kind).items()}


# ------------------------------------------------------------------------------------------- Dockerfile


@cache
def dockerfile() -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        current += raw.rstrip().removesuffix("\\") + " " if raw.rstrip().endswith("\\") else raw.strip()
        if not raw.rstrip().endswith("\\"):
            instruction, _, arguments = current.strip().partition(" ")
            lines.append((instruction.upper(), arguments.strip()))
            current = ""
    return tuple(lines)


@dataclass
class Stage:
    name: str | None  # FROM … AS name
    base: str  # an image, or an earlier stage's name
    instructions: list[tuple[str, str]] = field(default_factory=list)


@cache
def stages() -> tuple[Stage, ...]:
    found: list[Stage] = []
    for instruction, arguments in dockerfile():
        if instruction == "FROM":
            words = [word for word in arguments.split() if not word.startswith("--")]  # --platform=…
            name = words[2].lower() if len(words) == 3 and words[1].lower() == "as" else None
            assert len(words) in (1, 3), f"FROM {arguments}: not `FROM image [AS name]`"
            found.append(Stage(name, words[0]))
        else:
            assert found or instruction == "ARG", f"{instruction} before the first FROM"
            if found:
                found[-1].instructions.append((instruction, arguments))
    return tuple(found)


def stage_names() -> list[str]:
    return [stage.name for stage in stages() if stage.name]


def chain(target: str) -> list[Stage]:
    """The stages a target is built from, its root first (FROM <an earlier stage> …)."""
    by_name = {stage.name: stage for stage in stages() if stage.name}
    assert target in by_name, f"deploy/Dockerfile has no target {target!r} (stages: {stage_names()})"
    found = [by_name[target]]
    while found[0].base.lower() in by_name:
        assert len(found) <= len(by_name), f"FROM cycle at {target}"
        found.insert(0, by_name[found[0].base.lower()])
    return found


def external_base(target: str) -> str:
    return chain(target)[0].base


def docker(instruction: str, target: str | None = None) -> list[str]:
    """The arguments of every `instruction` of a target's stages (of the whole file without a target)."""
    if target is None:
        return [arguments for name, arguments in dockerfile() if name == instruction]
    return [arguments for stage in chain(target) for name, arguments in stage.instructions if name == instruction]


def exec_form(value: str, what: str) -> list[str]:
    assert value.startswith("["), f"{what} must be in exec (JSON) form: {value}"
    return yaml.safe_load(value)


def image_config(target: str) -> tuple[list[str], list[str]]:
    """(ENTRYPOINT, CMD) of a target as Docker sets them: the last of each along its stages, and an
    ENTRYPOINT resets a CMD inherited from an earlier stage (or the base image, which CMD we do not know)."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for stage in chain(target):
        own_cmd = False
        for instruction, arguments in stage.instructions:
            if instruction == "ENTRYPOINT":
                entrypoint = exec_form(arguments, f"{target}: ENTRYPOINT")
                cmd = cmd if own_cmd else []
            elif instruction == "CMD":
                cmd, own_cmd = exec_form(arguments, f"{target}: CMD"), True
    return entrypoint, cmd


def image_labels(target: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for arguments in docker("LABEL", target):
        labels |= dict(token.split("=", 1) for token in shlex.split(arguments))
    return labels


def run_commands(target: str, own: bool = False) -> list[list[str]]:
    """The argv of each shell command of the target's RUN instructions (split at &&, ||, ;, |); `own`: only
    those of its stages that the pipeline target is not built from."""
    kept = [stage for stage in chain(target) if not own or all(stage is not s for s in chain("pipeline"))]
    found = []
    for arguments in (arguments for stage in kept for name, arguments in stage.instructions if name == "RUN"):
        lexer = shlex.shlex(arguments, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in [*lexer, ";"]:
            if token in ("&&", "||", ";", "|"):
                found += [current] if current else []
                current = []
            else:
                current.append(token)
    return found


def uv_syncs(target: str, own: bool = False) -> list[list[str]]:
    return [argv[2:] for argv in run_commands(target, own) if argv[:2] == ["uv", "sync"]]


def installs_engine_extra(options: list[str]) -> bool:
    extras = [options[i + 1] for i, option in enumerate(options[:-1]) if option == "--extra"]
    extras += [option.split("=", 1)[1] for option in options if option.startswith("--extra=")]
    return ENGINE_EXTRA in extras or "--all-extras" in options


def copied(target: str) -> list[str]:
    """The build-context paths the target's stages COPY (or ADD)."""
    sources = []
    for arguments in [*docker("COPY", target), *docker("ADD", target)]:
        *paths, _destination = shlex.split(arguments)
        sources += [path.rstrip("/") for path in paths if not path.startswith("--")]
    return sources


def copies(target: str, package: str) -> bool:
    """Whether a package folder (e.g. engine/talkmill_engine) is in the image: it or a parent is copied."""
    return any(package == source or package.startswith(source + "/") or source == "." for source in copied(target))


def target_of(image: str) -> str | None:
    repo = str(image).rsplit(":", 1)[0] if ":" in str(image).rsplit("/", 1)[-1] else str(image)
    return next((target for target, ours in IMAGE_REPOS.items() if ours == repo), None)


def readme_env_template() -> dict[str, str]:
    """The deploy/.env template: the ```dotenv block of deploy/README.md."""
    block = re.search(r"```dotenv\n(.*?)```", README.read_text(), re.S)
    assert block, "deploy/README.md has no ```dotenv block (the deploy/.env template)"
    pairs = [line.split("=", 1) for line in block[1].splitlines() if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def bootstrap_value(name: str) -> str:
    match = re.search(rf"^{name}=(\S+)", (ROOT / "scripts" / "bootstrap").read_text(), re.M)
    assert match, f"scripts/bootstrap sets no {name}"
    return match[1]


# ------------------------------------------------------------------------------- commands in the manifests


def commands_of(entrypoint: list[str], command: list[str] | str | None) -> list[list[str]]:
    """The argv of each program a container runs: itself, or each line of an `sh -c` script."""
    command = [command] if isinstance(command, str) else list(command or [])
    if not entrypoint:
        return [command] if command else []
    if Path(entrypoint[0]).name in ("sh", "bash") and any(flag.endswith("c") for flag in entrypoint[1:]):
        return [shlex.split(line) for line in command[0].splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if Path(entrypoint[0]).name.startswith("python"):
        return []  # inline Python (the s3-buckets one-shot), no CLI
    return [entrypoint + command]


def service_process(service: dict) -> tuple[list[str], list[str] | str | None]:
    """(entrypoint, command) of a compose service of one of our images: an `entrypoint` drops the image's CMD."""
    image_entrypoint, image_cmd = image_config(target_of(service["image"]))
    entrypoint = service.get("entrypoint") or image_entrypoint
    entrypoint = shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint)
    command = service.get("command") if "command" in service else (None if "entrypoint" in service else image_cmd)
    return entrypoint, command


def container_process(container: dict) -> tuple[list[str], list[str] | None]:
    """(entrypoint, args) of a k8s container of one of our images: `command` drops the image's CMD too."""
    image_entrypoint, image_cmd = image_config(target_of(container["image"]))
    entrypoint = container.get("command") or image_entrypoint
    args = container.get("args") if "args" in container else (None if "command" in container else image_cmd)
    return list(entrypoint), args


def ours(image: object) -> bool:
    return str(image).startswith(IMAGE_NAMESPACE)


def workloads() -> list[tuple[str, str, bool, list[list[str]]]]:
    """(where, image, named the engine, argv of each program) of every compose service and k8s container that
    uses one of our images."""
    found = []
    for name, service in services().items():
        if ours(service.get("image")):
            argvs = commands_of(*service_process(service)) if target_of(service["image"]) else []
            found.append((f"compose {name}", service["image"], name in ENGINE_SERVICES, argvs))
    for workload, spec in pod_specs().items():
        for container in spec["containers"]:
            if ours(container.get("image")):
                argvs = commands_of(*container_process(container)) if target_of(container["image"]) else []
                named = (workload, container["name"]) in ENGINE_CONTAINERS
                found.append((f"k8s {workload}/{container['name']}", container["image"], named, argvs))
    return found


def is_engine(argv: list[str]) -> bool:
    return argv[:1] == ["talkmill-engine"] or argv[:2] == ["talkmill", "engine"]


def manifest_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every talkmill/talkmill-engine/prefect program started by the manifests, the images
    and the README."""
    found = [(f"Dockerfile target {target} ENTRYPOINT+CMD", sum(image_config(target), [])) for target in IMAGES]
    found += [(where, argv) for where, _, _, argvs in workloads() for argv in argvs]
    for line in readme_code_lines():
        tokens = shlex.split(re.split(r"\s(?:\||&&|;|#)\s", line)[0])
        if tokens[:2] == ["docker", "compose"]:
            tokens = next((tokens[i:] for i, t in enumerate(tokens) if t in PROGRAMS), [])
        if tokens and tokens[0] in PROGRAMS:
            found.append((f"deploy/README.md: {line}", tokens))
    return [(where, argv) for where, argv in found if argv and argv[0] in PROGRAMS]


def readme_code_lines() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh|console)\n(.*?)```", README.read_text(), re.S)
    lines, current = [], ""
    for block in blocks:
        for raw in block.splitlines():
            current += raw.rstrip().removesuffix("\\")
            if not raw.rstrip().endswith("\\"):
                if current.strip() and not current.lstrip().startswith("#"):
                    lines.append(current.strip().removeprefix("$ "))
                current = ""
    return lines


@cache
def script_help(program: str, path: tuple[str, ...]) -> tuple[int, str]:
    """`program PATH --help` of the venv's real console script, in its own process: `talkmill engine …`
    execs the engine's CLI, which would replace the test process if run in it."""
    script = BIN / program
    assert script.is_file(), f"{script}: no such console script (pyproject's [project.scripts], uv sync)"
    env = {**os.environ, "COLUMNS": "250", "TERMINAL_WIDTH": "250", "NO_COLOR": "1"}
    done = subprocess.run([str(script), *path, "--help"], capture_output=True, text=True, timeout=120,
                          env=env, cwd=ROOT, stdin=subprocess.DEVNULL)  # fmt: skip
    return done.returncode, done.stdout + done.stderr


PREFECT_HELP_SCRIPT = """
import contextlib, io, json, sys
from prefect.cli._app import app
answers = []
for path in json.loads(sys.argv[1]):
    sys.argv, out, code = ["prefect", *path, "--help"], io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            app()
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    except Exception as error:
        code = 1; out.write(repr(error))
    answers.append([code, out.getvalue()])
print(json.dumps(answers))
"""
_prefect_helps: dict[tuple[str, ...], tuple[int, str]] = {}


def prefect_helps(paths: set[tuple[str, ...]]) -> None:
    """`prefect PATH --help` for many paths in one process: prefect's CLI (cyclopts, not typer) takes ~3 s
    to import, a fraction of a second per help after that."""
    import json

    wanted = sorted(paths - set(_prefect_helps))
    if not wanted:
        return
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "PREFECT_HOME": "/nonexistent-talkmill-test"}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-c", PREFECT_HELP_SCRIPT, json.dumps(wanted)],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for path, (code, output) in zip(wanted, json.loads(done.stdout.splitlines()[-1])):
        _prefect_helps[path] = (code, output)


def prefect_help(path: tuple[str, ...]) -> tuple[int, str]:
    prefect_helps({path})
    return _prefect_helps[path]


def help_for(program: str, path: tuple[str, ...]) -> tuple[int, str]:
    return prefect_help(path) if program == "prefect" else script_help(program, path)


def usage_names(output: str, path: tuple[str, ...], program: str = "") -> bool:
    usage = next((line for line in output.splitlines() if "Usage:" in line), "")
    if program == "talkmill" and path[:1] == ("engine",):  # hands over: `python -m talkmill_engine …`'s help
        names = ("talkmill-engine", "talkmill_engine")
        return any(f" {' '.join((name, *path[1:]))} " in f" {usage} " for name in names)
    return f" {' '.join(path)} " in f" {usage} " if path else bool(usage)


def resolve(argv: list[str]) -> tuple[tuple[str, ...], list[str], list[str]]:
    """(command path, global options, options) of an argv: the path is the longest run of leading words
    whose help names them all in its usage line (so `work-pool create talkmill` → `work-pool create`)."""
    program, rest = argv[0], argv[1:]
    global_options = []
    while rest and rest[0].startswith("-"):
        global_options.append(rest.pop(0))
    words = []
    for token in rest:
        if token.startswith("-"):
            break
        words.append(token)
    path: tuple[str, ...] = ()
    for length in range(1, len(words) + 1):
        code, output = help_for(program, tuple(words[:length]))
        if code == 0 and usage_names(output, tuple(words[:length]), program):
            path = tuple(words[:length])
        else:
            break
    options = [token.split("=", 1)[0] for token in rest if token.startswith("-")]
    return path, global_options, options


def has_option(output: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", output) is not None


# ------------------------------------------------------------------------------------------------ tests


def test_every_yaml_file_parses():
    files = yaml_files()
    assert {path.name for path in files} >= {"compose.yaml", "engine.yaml", "worker.yaml", "config.yaml"}
    for path in files:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert documents and all(isinstance(doc, dict) for doc in documents), f"{path}: no mapping documents"


def docker_builds() -> list[tuple[str, list[str]]]:
    """(where, argv) of every `docker build` line in deploy/: README code blocks, compose and Dockerfile comments."""
    found = [("deploy/README.md", shlex.split(line)) for line in readme_code_lines()
             if line.startswith("docker build ")]
    for path in (COMPOSE, DOCKERFILE):
        for line in path.read_text().splitlines():
            match = re.match(r"#\s+(docker build .*)$", line.strip())
            if match:
                found.append((path.name, shlex.split(match[1])))
    return found


def test_version_is_pyprojects_in_the_dockerfile_compose_k8s_and_readme():
    for target, repo in IMAGE_REPOS.items():
        labels = image_labels(target)
        assert labels.get("org.opencontainers.image.version") == VERSION, (target, labels)
        assert labels.get("org.opencontainers.image.title") == repo.removeprefix(IMAGE_NAMESPACE), (target, labels)
    assert image_labels("pipeline")["org.opencontainers.image.title"] == PYPROJECT["project"]["name"]
    images = {name: service.get("image") for name, service in services().items()}
    our_services = {name: image for name, image in images.items() if ours(image)}
    assert set(our_services) >= {"engine", "prefect-worker", "prefect-server", "deploy"}, images
    assert set(our_services.values()) == set(IMAGES.values()), (our_services, IMAGES)
    containers = [c for spec in pod_specs().values() for c in spec["containers"]]
    assert containers and {c["image"] for c in containers} == set(IMAGES.values()), (containers, IMAGES)
    builds = docker_builds()
    readme = {argument(argv, "--target"): argument(argv, "-t")
              for where, argv in builds if where == "deploy/README.md"}
    assert readme == IMAGES, "deploy/README.md must build each target under the manifests' tag"
    for where, argv in builds:
        assert argument(argv, "-f") == "deploy/Dockerfile" and argv[-1] == ".", (where, argv)
        assert IMAGES.get(argument(argv, "--target")) == argument(argv, "-t"), (where, shlex.join(argv))


def test_each_service_uses_the_image_of_its_role():
    """The engine (by name, or whatever runs `talkmill-engine`) on the engine image, the rest on the pipeline's."""
    found = workloads()
    named = {where for where, _, is_named, _ in found if is_named}
    expected = {f"compose {name}" for name in ENGINE_SERVICES} | {f"k8s {w}/{c}" for w, c in ENGINE_CONTAINERS}
    assert named == expected, f"the engine's services, by name: {named} (expected {expected})"
    problems = []
    for where, image, is_named, argvs in found:
        if image not in IMAGES.values():
            problems.append(f"{where}: {image} is none of {sorted(IMAGES.values())}")
            continue
        role = "engine" if is_named or any(is_engine(argv) for argv in argvs) else "pipeline"
        if image != IMAGES[role]:
            problems.append(f"{where}: the {role} runs on {image}, not {IMAGES[role]} ({argvs})")
        if is_named and not any(argv[:2] == ["talkmill-engine", "serve"] for argv in argvs):
            problems.append(f"{where}: the engine runs no `talkmill-engine serve`: {argvs}")
    pipeline = [where for where, image, _, _ in found if image == IMAGES["pipeline"]]
    assert {"compose prefect-server", "compose prefect-worker", "compose deploy"} <= set(pipeline), pipeline
    assert {"k8s talkmill-worker/worker", "k8s talkmill-deploy/deploy"} <= set(pipeline), pipeline
    assert not problems, "\n".join(problems)


def test_runs_on_the_pipeline_image_name_the_engine_url():
    """The pipeline image has no engine: deploy/README.md says so, and its flow runs pass `talks_url`, the URL
    of the engine's load balancer."""
    text = " ".join(README.read_text().split())
    assert re.search(r"worker image has no engine[^.]*\(`talks_url`\)", text), "deploy/README.md: no engine inside"
    runs = [argv for where, argv in manifest_commands() if argv[1:3] == ["deployment", "run"]]
    assert runs, "deploy/README.md runs no deployment"
    listen = re.search(r"listen\s+(\d+);", NGINX.read_text())[1]
    for argv in runs:
        params = dict(argv[i + 1].split("=", 1) for i, token in enumerate(argv[:-1]) if token == "--param")
        assert "talks_url" in params, f"{shlex.join(argv)}: no talks_url (the worker image has no engine)"
        url = urlsplit(params["talks_url"])
        assert (url.hostname, str(url.port)) == ("engine-lb", listen), (argv, "the engine's one URL")


def test_dockerfile_builds_the_project_as_bootstrap_does():
    from packaging.specifiers import SpecifierSet

    assert set(IMAGES) <= set(stage_names()), f"deploy/Dockerfile needs the targets {set(IMAGES)}: {stage_names()}"
    assert len(stage_names()) == len(set(stage_names())), stage_names()
    for stage in stages():
        if stage.base.lower() not in stage_names():
            minor = re.fullmatch(r"python:(3\.\d+)-slim-bookworm", stage.base)
            assert minor, stage.base
            python = SpecifierSet(PYPROJECT["project"]["requires-python"])
            assert f"{minor[1]}.0" in python, (stage.base, "requires-python")
    debian = re.search(r"DEBIAN_PACKAGES=\(([^)]*)\)", (ROOT / "scripts" / "bootstrap").read_text())[1].split()
    for target in IMAGES:
        runs = " ".join(docker("RUN", target))
        uv = bootstrap_value("UV_VERSION")
        assert f'"uv=={uv}"' in runs or f"uv=={uv} " in runs, (target, "uv pin")
        syncs = uv_syncs(target)
        assert syncs, f"{target}: no `uv sync`"
        for options in syncs:
            assert {"--frozen", "--no-dev"} <= set(options), (target, "uv sync", options)
        assert "--no-install-project" not in syncs[-1], f"{target}: the last `uv sync` must install the project"
        metadata = ["pyproject.toml", "uv.lock", "README.md", "LICENSE"]
        assert set(metadata) <= set(copied(target)), (target, copied(target))
        for source in copied(target):
            assert (ROOT / source).exists(), f"{target}: COPY {source}: not in the build context (the repository root)"
        for package in PACKAGES:
            assert copies(target, package) == (target == "engine" or package != ENGINE_PACKAGE), (target, package)
        for folder in ("configs", "examples", "deploy"):  # the deployments' entrypoints, defaults and prefect.yaml
            assert folder in copied(target), (target, folder)
        installs = [p for p in debian if re.search(rf"apt-get install [^&]*\b{re.escape(p)}\b", runs)]
        assert installs == (debian if target == "engine" else []), (target, "Debian packages (the engine's)", installs)
        users = docker("USER", target)
        assert users and users[-1].split(":")[0] not in ("root", "0"), f"{target} must run as a non-root user"
        index = [name for stage in chain(target) for name, _ in stage.instructions]
        assert max(i for i, n in enumerate(index) if n == "RUN") < max(i for i, n in enumerate(index) if n == "USER")
    # the pipeline never installs the engine's extra; the engine's image does, in every one of its syncs
    assert not [options for options in uv_syncs("pipeline") if installs_engine_extra(options)], uv_syncs("pipeline")
    pip_installs = [argv for argv in run_commands("pipeline") if "install" in argv[:3] and "pip" in argv[:2]
                    and not any(arg.startswith("uv==") for arg in argv)]
    assert not pip_installs, f"pipeline: installs outside the lock: {pip_installs}"
    engine_syncs = uv_syncs("engine", own=True)
    assert engine_syncs and all(installs_engine_extra(options) for options in engine_syncs), uv_syncs("engine")
    assert installs_engine_extra(uv_syncs("engine")[-1]), uv_syncs("engine")
    # the engine's data dir: set, and the run-time user's
    data_dir = re.search(r"TALKMILL_ENGINE_DATA_DIR=(\S+)", " ".join(docker("ENV", "engine")))
    assert data_dir, "engine: ENV TALKMILL_ENGINE_DATA_DIR"
    user = docker("USER", "engine")[-1].split(":")[0]
    owned = [argv for argv in run_commands("engine") if argv[:1] == ["chown"]
             and any(arg.split(":")[0] == user for arg in argv[1:])]
    assert any(Path(data_dir[1]).is_relative_to(arg) for argv in owned for arg in argv if arg.startswith("/")), owned
    assert "TALKMILL_ENGINE_DATA_DIR" not in " ".join(docker("ENV", "pipeline")), "pipeline: no engine settings"


def test_dockerfile_entrypoint_is_the_console_script():
    import importlib

    for target in IMAGES:
        entrypoint, _ = image_config(target)
        assert len(entrypoint) == 1 and entrypoint[0] in SCRIPTS, (target, entrypoint, SCRIPTS)
        module, _, attribute = SCRIPTS[entrypoint[0]].partition(":")
        package = next(p for p in PACKAGES if Path(p).name == module.split(".")[0])
        assert copies(target, package), f"{target}: ENTRYPOINT {entrypoint[0]} runs {module}, not in the image"
        assert callable(getattr(importlib.import_module(module), attribute))
    assert image_config("pipeline")[0] != image_config("engine")[0], "each image its own console script"
    assert image_config("engine")[0] == ["talkmill-engine"]
    cmd = image_config("engine")[1]
    assert cmd[:1] == ["serve"] and argument(cmd, "--host") == "0.0.0.0", cmd
    assert docker("EXPOSE", "engine") == [argument(cmd, "--port")], (docker("EXPOSE", "engine"), cmd)


def test_every_command_and_option_in_the_manifests_exists():
    commands = manifest_commands()
    programs = {argv[0] for _, argv in commands}
    assert {"talkmill-engine", "prefect"} <= programs <= set(PROGRAMS), commands
    # every help prefect could be asked for below, in one process
    words = [[t for t in argv[1:] if not t.startswith("-")] for _, argv in commands if argv[0] == "prefect"]
    prefect_helps({tuple(w[:n]) for w in words for n in range(len(w) + 1)})
    problems = []
    for where, argv in commands:
        path, global_options, options = resolve(argv)
        if not path and [token for token in argv[1 + len(global_options):] if not token.startswith("-")]:
            problems.append(f"{where}: {shlex.join(argv)}: no such command")
            continue
        code, output = help_for(argv[0], path)
        if code != 0:
            command = " ".join([argv[0], *path])
            problems.append(f"{where}: {shlex.join(argv)}: `{command} --help` failed: {output[-500:]}")
            continue
        missing = [option for option in options if not has_option(output, option)]
        if global_options:
            _, root = help_for(argv[0], ())
            missing += [option for option in global_options if not has_option(root, option)]
        if missing:
            problems.append(f"{where}: {shlex.join(argv)}: {' '.join(argv[:1] + list(path))} has no {missing}")
    assert not problems, "\n".join(problems)


def all_env_names() -> dict[str, str]:
    """Every environment variable the manifests set, with where."""
    found = {}
    for name, service in services().items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        found.update({key: f"compose {name}" for key in environment})
    for _, doc in k8s_objects():
        if doc["kind"] == "ConfigMap":
            found.update({key: f"ConfigMap {doc['metadata']['name']}" for key in doc.get("data", {})})
        if doc["kind"] == "Secret":
            found.update({key: f"Secret {doc['metadata']['name']}" for key in doc.get("stringData", {})})
    for workload, spec in pod_specs().items():
        for container in spec["containers"]:
            found.update({item["name"]: f"k8s {workload}" for item in container.get("env", [])})
    for arguments in docker("ENV"):
        found.update({key: "Dockerfile" for key in re.findall(r"(?:^|\s)([A-Z_][A-Z0-9_]*)=", arguments)})
    found.update({key: "deploy/README.md .env template" for key in readme_env_template()})
    found.update({key: "compose interpolation" for key in compose_interpolations()})
    return found


def compose_interpolations() -> dict[str, str | None]:
    """${NAME}, ${NAME:-default}, ${NAME:?error} in compose.yaml ($$ escapes excluded) → default or None."""
    text = COMPOSE.read_text().replace("$$", "")
    return {m[1]: m[3] if m[2] == ":-" else None for m in re.finditer(r"\$\{(\w+)(?:(:-|:\?|-|\?)([^}]*))?\}", text)}


def test_every_talkmill_and_prefect_variable_is_a_real_setting():
    from prefect.settings import Settings
    from prefect.settings.legacy import _get_settings_fields
    from talkmill_engine.settings import EngineSettings

    from connectors.talks.backend import WEBHOOK_SECRET_ENV, WEBHOOK_URL_ENV
    from talkmill.config import BackendConfig

    engine = set(EngineSettings.model_fields) | ENGINE_SETTINGS_BEING_ADDED
    pipeline = {BackendConfig().key_env, WEBHOOK_SECRET_ENV, WEBHOOK_URL_ENV}
    prefect = set(_get_settings_fields(Settings))
    unknown = []
    for name, where in sorted(all_env_names().items()):
        if name.startswith("TALKMILL_ENGINE_"):
            ok = name.removeprefix("TALKMILL_ENGINE_").lower() in engine
        elif name.startswith("TALKMILL_"):
            ok = name in pipeline
        elif name.startswith("PREFECT_"):
            ok = name in prefect
        else:
            ok = name in OTHER_VARIABLES
        if not ok:
            unknown.append(f"{name} ({where})")
    assert not unknown, f"not a setting of talkmill, Prefect or the list above: {unknown}"


def test_compose_interpolations_are_in_the_env_template_or_have_defaults():
    template = readme_env_template()
    missing = [name for name, default in compose_interpolations().items() if default is None and name not in template]
    assert not missing, f"deploy/README.md's .env template lacks {missing}"


def test_no_secret_is_committed():
    problems = []
    for name, service in services().items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            value = str(value)
            if (SECRET_NAME.search(key) or URL_WITH_PASSWORD.search(value)) and not re.search(r"\$\{\w+", value):
                problems.append(f"compose {name}: {key} is a literal")
    for _, doc in k8s_objects():
        if doc["kind"] == "Secret":
            for key, value in doc.get("stringData", {}).items():
                if SECRET_NAME.search(key) or URL_WITH_PASSWORD.search(value):
                    if not re.search(r"<[\w-]+>", value):
                        problems.append(f"Secret {key}: not a <placeholder>")
        if doc["kind"] == "ConfigMap":
            for key, value in doc.get("data", {}).items():
                if SECRET_NAME.search(key) or URL_WITH_PASSWORD.search(str(value)):
                    problems.append(f"ConfigMap {key}: a secret belongs in the Secret")
    for workload, spec in pod_specs().items():
        for container in spec["containers"]:
            for item in container.get("env", []):
                if "value" in item and (SECRET_NAME.search(item["name"]) or URL_WITH_PASSWORD.search(str(item["value"]))):
                    problems.append(f"k8s {workload}: {item['name']} is a literal")
    template = readme_env_template()
    for key, value in template.items():
        if SECRET_NAME.search(key) and "change-me" not in value:
            problems.append(f".env template: {key} is not a change-me placeholder")
    assert not problems, problems


# ------------------------------------------------------------------------------------------- compose


def argument(argv: list[str], option: str) -> str:
    for i, token in enumerate(argv):
        if token == option:
            return argv[i + 1]
        if token.startswith(option + "="):
            return token.split("=", 1)[1]
    raise AssertionError(f"{option} not in {argv}")


def service_argv(name: str) -> list[str]:
    entrypoint, command = service_process(services()[name])
    return entrypoint + list(command or [])


def healthcheck_url(name: str) -> str:
    test = services()[name]["healthcheck"]["test"]
    match = re.search(r"https?://[^\s'\"]+", " ".join(test) if isinstance(test, list) else test)
    assert match, f"{name}: the healthcheck requests no URL"
    return match[0]


def test_compose_dependencies_and_healthchecks_are_wired():
    all_services = services()
    for name, service in all_services.items():
        depends = service.get("depends_on") or {}
        for target, spec in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            assert target in all_services, f"{name} depends on a missing {target}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in all_services[target], f"{name} waits for {target} to be healthy: no healthcheck"
            if condition == "service_completed_successfully":
                assert all_services[target].get("restart") == "no", f"{target} is a one-shot: restart must be 'no'"
    engine_port = argument(service_argv("engine"), "--port")
    assert healthcheck_url("engine") == f"http://127.0.0.1:{engine_port}/health"
    server_port = argument(service_argv("prefect-server"), "--port")
    assert argument(service_argv("prefect-server"), "--host") == "0.0.0.0"
    assert healthcheck_url("prefect-server") == f"http://127.0.0.1:{server_port}/api/health"
    for name in ("deploy", "prefect-worker"):
        assert all_services[name]["environment"]["PREFECT_API_URL"] == f"http://prefect-server:{server_port}/api"
    for name, service in all_services.items():
        for env_file in service.get("env_file") or []:
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            assert path == ".env", f"{name}: secrets come from deploy/.env only, not {path}"
        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}: missing"
            else:
                assert source in (compose().get("volumes") or {}), f"{name}: volume {source} is not declared"
        for config in service.get("configs") or []:
            assert config["source"] in compose().get("configs", {}), f"{name}: config {config['source']} undeclared"


def test_compose_scales_workers_and_engines_on_shared_state():
    all_services = services()
    assert all_services["prefect-worker"]["deploy"]["replicas"] >= 2
    assert all_services["engine"]["deploy"]["replicas"] >= 2
    assert "ports" not in all_services["engine"], "replicas publish no port: the load balancer is the one URL"
    assert argument(service_argv("prefect-worker"), "--pool") == POOL
    env = all_services["engine"]["environment"]
    init = compose()["configs"]["postgres-init"]["content"]
    for variable, scheme, service in (
        (env["TALKMILL_ENGINE_DATABASE_URL"], "postgresql", "engine"),
        (all_services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"], "postgresql+asyncpg", "prefect-server"),
    ):
        url = urlsplit(re.sub(r"\$\{[^}]*\}", "password", variable))  # a ${…} message may hold a "/"
        assert url.scheme == scheme, (service, variable)
        assert url.hostname == "postgres" and url.hostname in all_services
        assert re.search(rf"CREATE DATABASE {url.path.strip('/')} OWNER {url.username};", init), (service, "database")
        assert re.search(rf"CREATE ROLE {url.username} LOGIN PASSWORD", init), (service, "role")
        assert "postgres" in all_services[service]["depends_on"]
    results = urlsplit(env["TALKMILL_ENGINE_RESULTS_S3_URL"])
    assert results.scheme == "s3" and results.netloc in all_services["s3-buckets"]["environment"]["BUCKETS"].split()
    endpoint = urlsplit(env["TALKMILL_ENGINE_S3_ENDPOINT_URL"])
    assert endpoint.hostname in all_services and f"-s3.port={endpoint.port}" in all_services[endpoint.hostname]["command"]
    assert all_services["deploy"]["environment"]["AWS_ENDPOINT_URL_S3"] == env["TALKMILL_ENGINE_S3_ENDPOINT_URL"]


def test_compose_engine_is_one_url_behind_nginx():
    all_services = services()
    lb = all_services["engine-lb"]
    assert any(str(v).split(":")[:2] == ["./nginx.conf", "/etc/nginx/nginx.conf"] for v in lb["volumes"])
    conf = NGINX.read_text()
    (upstream_name, upstream) = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.S).groups()
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", upstream, re.M)
    engine_port = argument(service_argv("engine"), "--port")
    assert servers == [("engine", engine_port)], servers
    assert re.search(rf"proxy_pass\s+http://{upstream_name};", conf)
    listen = re.search(r"listen\s+(\d+);", conf)[1]
    assert any(str(p).endswith(f":{listen}") for p in lb["ports"]), (lb["ports"], listen)
    assert healthcheck_url("engine-lb") == f"http://127.0.0.1:{listen}/health"
    public = urlsplit(all_services["engine"]["environment"]["TALKMILL_ENGINE_PUBLIC_BASE_URL"])
    assert (public.hostname, str(public.port)) == ("engine-lb", listen)
    assert re.search(r"client_max_body_size\s+(\d+)m;", conf) and int(re.search(r"client_max_body_size\s+(\d+)m;", conf)[1]) >= 15


def test_deploy_job_and_prefect_yaml_name_the_same_pool():
    script = services()["deploy"]["command"][0]
    assert f"work-pool create {POOL} --type process" in script
    prefect_file = argument(shlex.split(script.splitlines()[1]), "--prefect-file")
    path = ROOT / prefect_file
    if not path.exists():
        pytest.skip(f"{prefect_file} is not written yet")
    deployments = yaml.safe_load(path.read_text()).get("deployments") or []
    assert deployments, f"{prefect_file} has no deployments"
    for deployment in deployments:
        assert (deployment.get("work_pool") or {}).get("name") == POOL, deployment.get("name")


# ---------------------------------------------------------------------------------------- kubernetes


def test_k8s_objects_are_named_and_typed():
    seen = set()
    for filename, doc in k8s_objects():
        assert doc.get("apiVersion") and doc.get("kind"), f"{filename}: apiVersion and kind"
        name = (doc.get("metadata") or {}).get("name")
        assert name, f"{filename}: {doc['kind']} without metadata.name"
        assert (doc["kind"], name) not in seen, f"{filename}: {doc['kind']} {name} twice"
        seen.add((doc["kind"], name))
    kinds = {kind for kind, _ in seen}
    assert kinds >= {"Deployment", "Service", "ConfigMap", "Secret"}, kinds


def test_k8s_selectors_match_and_services_reach_a_port():
    deployments = k8s("Deployment")
    assert set(deployments) >= {"talkmill-engine", "talkmill-worker"}
    for name, doc in deployments.items():
        labels = doc["spec"]["template"]["metadata"]["labels"]
        selector = doc["spec"]["selector"]["matchLabels"]
        assert selector and selector.items() <= labels.items(), f"{name}: selector {selector} vs labels {labels}"
        assert doc["spec"]["replicas"] >= 2, name
    for name, service in k8s("Service").items():
        selector = service["spec"]["selector"]
        targets = [d for d in deployments.values() if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert targets, f"Service {name} selects no Deployment: {selector}"
        for target in targets:
            containers = target["spec"]["template"]["spec"]["containers"]
            for port in service["spec"]["ports"]:
                assert any(container_port(c, port.get("targetPort", port["port"])) for c in containers), (name, port)


def container_port(container: dict, port: int | str) -> int | None:
    for declared in container.get("ports", []):
        if port in (declared.get("name"), declared["containerPort"]):
            return declared["containerPort"]
    return None


def test_k8s_probes_hit_health_on_the_container_port():
    """Readiness (and start-up) on /health, green once models are loaded; the engine's liveness on /live, so
    a worker loading models (or restarting) is not killed for it."""
    for workload, spec in pod_specs().items():
        for container in spec["containers"]:
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(kind)
                if probe:
                    live = (workload, kind) == ("talkmill-engine", "livenessProbe")
                    assert probe["httpGet"]["path"] == ("/live" if live else "/health"), (workload, kind)
                    assert container_port(container, probe["httpGet"]["port"]), (workload, kind, "port not declared")
    (engine,) = k8s("Deployment")["talkmill-engine"]["spec"]["template"]["spec"]["containers"]
    assert engine.get("readinessProbe") and engine.get("livenessProbe")
    engine_argv = sum(container_process(engine), [])
    served = int(argument(engine_argv, "--port"))
    assert container_port(engine, engine["readinessProbe"]["httpGet"]["port"]) == served
    assert argument(engine_argv, "--host") == "0.0.0.0"
    (worker,) = k8s("Deployment")["talkmill-worker"]["spec"]["template"]["spec"]["containers"]
    assert argument(worker["command"] + worker["args"], "--pool") == POOL
    if worker.get("livenessProbe"):
        assert "--with-healthcheck" in worker["args"]
        env = {item["name"]: item.get("value") for item in worker.get("env", [])}
        assert int(env["PREFECT_WORKER_WEBSERVER_PORT"]) == container_port(worker, worker["livenessProbe"]["httpGet"]["port"])
        assert env["PREFECT_WORKER_WEBSERVER_HOST"] == "0.0.0.0"
    for workload in ("talkmill-engine", "talkmill-worker"):
        for container in pod_specs()[workload]["containers"]:
            assert {"requests", "limits"} <= set(container.get("resources", {})), (workload, "resources")


def test_k8s_configuration_is_complete_and_consistent():
    config_maps, secrets = k8s("ConfigMap"), k8s("Secret")
    for workload, spec in pod_specs().items():
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, (workload, source)
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, (workload, source)
    settings = {k: v for doc in [*config_maps.values()] for k, v in doc.get("data", {}).items()}
    settings |= {k: v for doc in secrets.values() for k, v in doc.get("stringData", {}).items()}
    required = {"TALKMILL_ENGINE_DATABASE_URL", "TALKMILL_ENGINE_RESULTS_S3_URL", "TALKMILL_ENGINE_KEYS",
                "TALKMILL_ENGINE_WEBHOOK_SECRET", "TALKMILL_ENGINE_PUBLIC_BASE_URL", "TALKMILL_TALKS_KEY",
                "PREFECT_API_URL"}
    assert required <= set(settings), required - set(settings)
    assert settings["TALKMILL_ENGINE_DATABASE_URL"].startswith("postgresql://")
    assert settings["TALKMILL_ENGINE_RESULTS_S3_URL"].startswith("s3://")
    public = urlsplit(settings["TALKMILL_ENGINE_PUBLIC_BASE_URL"])
    service = k8s("Service").get(public.hostname)
    assert service and public.port in [p["port"] for p in service["spec"]["ports"]], "the public URL is the engine Service"
    data_dir = re.search(r"TALKMILL_ENGINE_DATA_DIR=(\S+)", " ".join(docker("ENV", "engine")))[1]
    (engine,) = pod_specs()["talkmill-engine"]["containers"]
    assert data_dir in [mount["mountPath"] for mount in engine.get("volumeMounts", [])]
    assert any(str(v).endswith(f":{data_dir}") for v in services()["engine"].get("volumes", []))
