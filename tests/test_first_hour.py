"""The first hour on a fresh machine: no implicit download, no default judge, cheap checks before work.

Every test here fails against the behaviour issue 12 describes (hub retry loops, tracebacks, a random
judge, rewards that abstain on everything, gates that cannot decide).
"""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from evalkit import checkpoints
from evalkit.errors import EvalkitError, MissingWeightsError


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty Hugging Face cache and checkpoints folder, and any outside connection is a test failure."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(checkpoints, "CHECKPOINT_DIR", tmp_path / "ckpt")
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "localhost", "::1") and not str(host).startswith("/"):
            raise AssertionError(f"network access to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return tmp_path


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text, text
    return text


# ------------------------------------------------------------------------------------------ weights
@pytest.mark.parametrize("reward", ["pickscore", "hpsv3"])
def test_missing_reward_weights_fail_fast_with_the_fetch_command(no_network, reward) -> None:
    import transformers  # noqa: F401 - import time is not what is measured

    import evalkit.rewards.hpsv3  # noqa: F401
    import evalkit.rewards.pickscore  # noqa: F401
    from evalkit.grpo.launch import build_scorer

    started = time.perf_counter()
    with pytest.raises(MissingWeightsError) as info:
        build_scorer(reward, {})
    assert time.perf_counter() - started < 10
    text = _one_line(info.value)
    cli = checkpoints.hub_cli()
    assert cli and f"{cli} download " in text  # the hub CLI actually installed, with its exact syntax
    assert "evalkit weights fetch" in text and "--allow-download" in text


def test_installed_hub_cli_is_the_one_named() -> None:
    cli = checkpoints.hub_cli()
    assert cli is not None and shutil.which(cli) or (Path(__import__("sys").executable).parent / cli).exists()
    assert checkpoints.fetch_command("org/model").split()[0] == cli


def test_missing_hf_judge_fails_fast_with_the_fetch_command(no_network) -> None:
    import transformers  # noqa: F401 - import time is not what is measured

    from evalkit.judges import check_judge, load_judge

    for attempt in (
        lambda: load_judge("hf:SomeOrg/Some-VL-7B"),
        lambda: check_judge("hf:SomeOrg/Some-VL-7B"),
    ):
        started = time.perf_counter()
        with pytest.raises(MissingWeightsError) as info:
            attempt()
        assert time.perf_counter() - started < 10
        assert f"{checkpoints.hub_cli()} download SomeOrg/Some-VL-7B" in _one_line(info.value)


def test_reward_weights_are_found_in_the_checkpoints_folder_without_network(no_network) -> None:
    from evalkit.grpo.launch import build_scorer
    from evalkit.rewards.tiny_models import tiny_pickscore

    folder = tiny_pickscore()
    for name in ("pickscore", "pickscore-processor"):  # what the manifests name
        shutil.copytree(folder, no_network / "ckpt" / name)
    scorer = build_scorer("pickscore", {"device": "cpu"})
    assert scorer.config()["model"] == "yuvalkirstain/PickScore_v1"


def test_explicit_fetch_failures_are_one_line(no_network, monkeypatch) -> None:
    with pytest.raises(EvalkitError) as info:
        checkpoints.fetch("geneval-mask2former")  # not on the hub: says how to get it
    assert "wget" in _one_line(info.value)
    with pytest.raises(EvalkitError) as info:
        checkpoints.fetch("pickscor")
    assert "did you mean 'pickscore'" in _one_line(info.value)


# ------------------------------------------------------------------------------------------ rewards
@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("pickscore", {"normalise": "flow_grpo"}, "did you mean 'normalize'"),
        ("pickscore", {"normalize": "z"}, "normalize='z' is not one of"),
        ("unifiedreward", {"judge": "tiny", "prompt": "x"}, "prompt='x' is not one of"),
        ("viescore", {}, "computed by a judge"),
        ("dvreward", {}, "computed by a judge"),
        ("dvreward", {"judge": "hff:x"}, "did you mean 'hf'"),
        ("brightness", {"x": 1}, "takes no options"),
    ],
)
def test_reward_user_errors_are_one_line_before_anything_loads(name, options, message) -> None:
    from evalkit.grpo.launch import build_scorer

    with pytest.raises(EvalkitError, match=message) as info:
        build_scorer(name, options)
    _one_line(info.value)


def test_dvreward_has_no_default_judge_and_needs_questions_for_every_prompt(tmp_path) -> None:
    from evalkit.rewards.checks import check_reward

    with pytest.raises(TypeError):  # no default judge in the factory either
        from evalkit.rewards.dvreward import build_dvreward

        build_dvreward()  # type: ignore[call-arg]
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        '{"prompt": "a cat", "semantic_questions": [{"question_type": "semantic", "question": "Is there a '
        'cat?", "is_valid": true, "tag": "Existence"}], "quality_questions": []}\n'
    )
    check_reward("dvreward", {"judge": "tiny", "questions": str(questions)}, prompts=[("a cat", {})])
    with pytest.raises(EvalkitError, match="no questions for 1 of 2 prompts"):
        check_reward(
            "dvreward", {"judge": "tiny", "questions": str(questions)}, prompts=[("a cat", {}), ("a dog", {})]
        )
    with pytest.raises(EvalkitError, match="does not exist"):
        check_reward("dvreward", {"judge": "tiny", "questions": str(tmp_path / "none.jsonl")})
    inline = {
        "semantic_questions": [
            {"question_type": "semantic", "question": "Dog?", "is_valid": True, "tag": "Existence"}
        ]
    }
    check_reward("dvreward", {"judge": "tiny"}, prompts=[("a dog", inline)])  # questions in the metadata


# ------------------------------------------------------------------------------------------ judges
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_judge_reachability_is_checked_with_one_connect() -> None:
    from evalkit.judges import check_judge

    port = _free_port()  # nothing listens there
    started = time.perf_counter()
    with pytest.raises(EvalkitError, match=f"cannot connect to 127.0.0.1:{port}") as info:
        check_judge("openai:judge-model", url=f"http://127.0.0.1:{port}/v1")
    assert time.perf_counter() - started < 10
    _one_line(info.value)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_judge("openai:judge-model", url=f"http://127.0.0.1:{server.getsockname()[1]}/v1")
    with pytest.raises(EvalkitError, match="did you mean 'openai'"):
        check_judge("opneai:judge-model")
    with pytest.raises(EvalkitError, match="azure: judges need --judge-url"):
        check_judge("azure:deployment")


# ------------------------------------------------------------------------------------------ training
def test_training_refuses_dvreward_without_questions_and_an_all_abstaining_epoch(tmp_path) -> None:
    from test_grpo_trainer import PROMPTS, tiny_config

    from evalkit.generators.tiny_sd3 import tiny_sd3_pipeline
    from evalkit.grpo.trainer import GRPOTrainer
    from evalkit.rewards.dvreward import DVReward

    class NoJudge:  # never asked: the trainer refuses before the first rollout
        def config(self):
            return {}

    config = tiny_config(tmp_path, rewards={"dvreward": 1.0})
    with pytest.raises(EvalkitError, match=f"no questions for {len(PROMPTS)} of {len(PROMPTS)} prompts"):
        GRPOTrainer(config, tiny_sd3_pipeline(), {"dvreward": DVReward(NoJudge())}, PROMPTS)

    class Abstains:
        name = "abstains"

        def score(self, images, prompts, metadata):
            return [None for _ in images]

    config = tiny_config(tmp_path, rewards={"abstains": 1.0}, save_freq=1)
    trainer = GRPOTrainer(config, tiny_sd3_pipeline(), {"abstains": Abstains()}, PROMPTS)
    with pytest.raises(EvalkitError, match="abstained on all 8 rollouts"):
        trainer.train(1)
    assert not (tmp_path / "run" / "checkpoints").exists()  # no untrained LoRA saved as if trained


def test_tiny_ablation_spec_has_questions_for_its_prompts_and_a_small_eval_limit() -> None:
    from evalkit import paths
    from evalkit.grpo.ablate_cli import read_prompts, spec_path
    from evalkit.grpo.ablation import load_ablation_spec
    from evalkit.rewards.checks import check_reward

    spec = load_ablation_spec(spec_path("tiny-sd3"))
    assert spec.eval_limit is not None and spec.eval_limit <= 8
    prompts = read_prompts(paths.DEMO_DATA_DIR / "geneval" / "evaluation_metadata.jsonl")
    for run in spec.rewards:  # what `ablate-reward` checks before training: DVReward covers every prompt
        check_reward(run.name, run.scorer, prompts=[(p, {}) for p in prompts])


# ------------------------------------------------------------------------------------------ demo data
def test_demo_prompts_ship_in_the_package_and_match_upstream() -> None:
    from evalkit import data, paths
    from evalkit.benchmarks.geneval import GenEval

    samples = GenEval(paths.DEMO_DATA_DIR, protocol="geneval").samples()
    assert len(samples) == 8  # `make demo` runs --limit 8
    pinned = data.manifest("geneval")["files"]["geneval/object_names.txt"]["sha256"]
    assert data.sha256_of(paths.DEMO_DATA_DIR / "geneval" / "object_names.txt") == pinned
    source = (paths.DEMO_DATA_DIR.parent / "SOURCE.md").read_text()
    shipped = paths.DEMO_DATA_DIR / "geneval" / "evaluation_metadata.jsonl"
    assert data.sha256_of(shipped) in source
    full = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "geneval"
    if (full / "evaluation_metadata.jsonl").exists():  # the subset is upstream's first lines, byte for byte
        lines = (full / "evaluation_metadata.jsonl").read_text().splitlines(keepends=True)
        assert shipped.read_text() == "".join(lines[: len(samples)])


# ------------------------------------------------------------------------------------------ data fetch
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/mirror (laid out like a data folder)."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _copy_manifest_files(benchmark: str, source: Path, mirror: Path) -> int:
    from evalkit import data

    n = 0
    for rel, entry in data.manifest(benchmark)["files"].items():
        if entry.get("url") and (source / rel).exists():
            (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / rel, mirror / rel)
            n += 1
    return n


def test_data_fetch_from_a_local_http_mirror_verifies_and_installs_judge_prompts(
    local_server, tmp_path, data_dir
) -> None:
    from evalkit import data

    mirror, url = local_server
    for benchmark in ("tiif", "wise", "geneval"):
        if not _copy_manifest_files(benchmark, data_dir, mirror):
            pytest.skip("no shared benchmark copy to serve")
        target = tmp_path / "data"
        result = data.fetch(benchmark, target, mirror=url, timeout=10)
        assert result.downloaded and data.verify(target, benchmark) == {
            rel: "ok" for rel in data.manifest(benchmark)["files"]
        }
        assert not data.not_fetchable(benchmark, target)
        if benchmark != "geneval":  # judge prompts come from evalkit's protocol data, checksummed
            assert result.installed and all("judge_prompts" in rel for rel in result.installed)
        again = data.fetch(benchmark, target, mirror=url, timeout=10)
        assert not again.downloaded and len(again.present) == len(data.manifest(benchmark)["files"])


def test_data_fetch_failures_are_one_line(local_server, tmp_path) -> None:
    from evalkit import data

    mirror, url = local_server
    with pytest.raises(EvalkitError, match="could not download") as info:  # file not on the mirror: 404
        data.fetch("geneval", tmp_path / "data", mirror=url, timeout=5)
    _one_line(info.value)
    first = next(iter(data.manifest("geneval")["files"]))
    (mirror / first).parent.mkdir(parents=True)
    (mirror / first).write_text("not the official file\n")
    with pytest.raises(EvalkitError, match="checksum mismatch") as info:
        data.fetch("geneval", tmp_path / "data", mirror=f"file://{mirror}", timeout=5)
    _one_line(info.value)
    assert not (tmp_path / "data" / first).exists()
    port = _free_port()
    started = time.perf_counter()
    with pytest.raises(EvalkitError, match="could not download") as info:
        data.fetch("geneval", tmp_path / "data", mirror=f"http://127.0.0.1:{port}", timeout=5)
    assert time.perf_counter() - started < 10
    _one_line(info.value)


def test_data_fetch_gedit_exports_the_dataset_and_never_reports_an_empty_success(tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    from evalkit import data
    from evalkit.benchmarks.gedit import GEdit

    hub_id = data.manifest("gedit")["hub_dataset"]["id"]
    with pytest.raises(EvalkitError, match=f"no copy of {hub_id}"):
        data.fetch("gedit", tmp_path / "data", mirror=f"file://{tmp_path / 'empty'}")
    rows = {
        "task_type": ["color_alter", "style_change"],
        "key": ["k1", "k2"],
        "instruction": ["make it red", "make it a sketch"],
        "instruction_language": ["en", "en"],
        "input_image": [Image.new("RGB", (8, 8), "blue"), Image.new("RGB", (8, 8), "white")],
        "input_image_raw": [Image.new("RGB", (8, 8), "blue"), Image.new("RGB", (8, 8), "white")],
        "Intersection_exist": [True, False],
    }
    features = datasets.Features(
        {
            **{
                k: datasets.Value("string")
                for k in ("task_type", "key", "instruction", "instruction_language")
            },
            "input_image": datasets.Image(),
            "input_image_raw": datasets.Image(),
            "Intersection_exist": datasets.Value("bool"),
        }
    )
    folder = tmp_path / "mirror" / hub_id
    folder.mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "train.parquet"))
    target = tmp_path / "data"
    result = data.fetch("gedit", target, mirror=f"file://{tmp_path / 'mirror'}")
    n_prompts = len(data.manifest("gedit")["files"])  # judge prompts: installed by the failed try above
    assert result.exported == 2 and len(result.installed) + len(result.present) == n_prompts
    samples = GEdit(target).samples()
    assert [s.prompt for s in samples] == rows["instruction"] and all(s.input_image.exists() for s in samples)
    assert not data.not_fetchable("gedit", target)


# ------------------------------------------------------------------------------------------ before work
def test_prechecks_find_missing_scoring_files_before_generation(data_dir, tmp_path) -> None:
    from evalkit.benchmarks.dpg import DPG
    from evalkit.benchmarks.tiif import TIIF
    from evalkit.prechecks import check_before_work, check_scoring_inputs

    for folder in ("tiif_bench/testmini_prompts", "tiif_bench/testmini_eval_prompts", "dpg_bench/prompts"):
        shutil.copytree(data_dir / folder, tmp_path / folder)
    tiif = TIIF(tmp_path, protocol="tiif")  # prompts present, judge prompts not
    samples = tiif.samples()[:2]
    with pytest.raises(EvalkitError, match="judge prompt missing.*evalkit data fetch tiif") as info:
        check_scoring_inputs(tiif)
    _one_line(info.value)
    from evalkit import data

    data.fetch("tiif", tmp_path, mirror=f"file://{data_dir}")  # installs the shipped judge prompts
    check_scoring_inputs(tiif)
    with pytest.raises(EvalkitError, match="scored by a judge"):
        check_before_work(tiif, samples)
    dpg = DPG(tmp_path)
    with pytest.raises(EvalkitError, match="dpg_bench.csv"):
        check_before_work(dpg, dpg.samples()[:1], judge="tiny")


def test_prechecks_refuse_srr_and_unwritable_folders_before_work(tmp_path) -> None:
    from evalkit.benchmarks.base import Sample
    from evalkit.prechecks import check_model_can, check_srr, check_writable

    with pytest.raises(EvalkitError, match="tiny-sd3 cannot refine"):
        check_model_can("tiny-sd3", {}, {"refine"})
    with pytest.raises(EvalkitError, match="cannot edit"):
        check_model_can("tiny-sd3", {}, {"edit"})
    check_model_can("tiny-sd3-edit", {}, {"edit"})
    samples = [Sample(id="0", prompt="a cat", metadata={})]
    with pytest.raises(EvalkitError, match="cannot refine"):
        check_srr("tiny-sd3", {}, rounds=1, gate="all", samples=samples)
    with pytest.raises(EvalkitError, match="unknown SRR gate"):
        check_srr("bagel", {}, rounds=1, gate="selfish", samples=samples)
    with pytest.raises(
        EvalkitError, match="self cannot decide.*needs questions|self cannot decide.*no questions"
    ):
        check_srr("bagel", {}, rounds=1, gate="self", samples=samples, reward_judge="tiny")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(EvalkitError, match="is not a folder"):
        check_writable(blocker / "runs")
    check_writable(tmp_path / "new" / "runs")
