"""GLUE-family recipes: local GLUE-format folders written here, hub records, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from camtl.data.examples import load_task_examples
from camtl.data.sources import read_split
from camtl.errors import DataError
from camtl.tasks import registry
from camtl.tasks.glue import GLUE_FILES, GLUE_HUB, GLUE_TASKS, glue_task
from camtl.tasks.spec import SourceSpec, TaskSpec

MNLI_TRAIN_HEAD = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t"
    "sentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\t"
    "sentence2\tlabel1\tgold_label"
)
MNLI_DEV_HEAD = MNLI_TRAIN_HEAD.replace(
    "label1\tgold_label", "label1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
)
SNLI_HEAD = (
    "gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tcaptionID\tpairID\tlabel1"
)


def mnli_row(i: int, a: str, b: str, label: str, dev: bool = False) -> str:
    votes = "\t".join([label] * (5 if dev else 1))
    parses = f"( {a} )\t( {b} )\t(S {a})\t(S {b})"
    return f"{i}\t{i}\t{i}e\tfiction\t{parses}\t{a}\t{b}\t{votes}\t{label}"


# folder -> file -> lines; every dev file has 2 rows, every train file 3.
GLUE_DATA: dict[str, dict[str, list[str]]] = {
    "CoLA": {
        "train.tsv": [
            "src1\t1\t\tThe cat sat on the mat.",
            "src1\t0\t*\tCat the mat on sat.",
            'src2\t1\t\tShe reads "old" books.',
        ],
        "dev.tsv": ["src3\t0\t*\tBooks reads she.", "src3\t1\t\tHe left early."],
    },
    "SST-2": {
        "train.tsv": [
            "sentence\tlabel",
            "a warm , funny film \t1",
            "dull and long \t0",
            'it \'s "fine" \t1',
        ],
        "dev.tsv": ["sentence\tlabel", "bright work \t1", "a mess \t0"],
    },
    "MRPC": {
        "train.tsv": [
            "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
            "1\t11\t12\tThe firm grew fast.\tThe company expanded quickly.",
            "0\t13\t14\tRain fell.\tPrices rose.",
            "1\t15\t16\tHe won.\tHe was the winner.",
        ],
        "dev.tsv": [
            "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
            "0\t17\t18\tA dog ran.\tThe vote failed.",
            "1\t19\t20\tShe said yes.\tShe agreed.",
        ],
    },
    "QQP": {
        "train.tsv": [
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            "1\t1\t2\tHow do I cook rice?\tWhat is the way to cook rice?\t1",
            "2\t3\t4\tWhy is the sky blue?\tHow tall is a giraffe?\t0",
            "3\t5\t6\tWhat is AI?\tWhat does AI mean?\t1",
        ],
        "dev.tsv": [
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            "4\t7\t8\tIs tea healthy?\tIs tea good for you?\t1",
            "5\t9\t10\tWhere is Oslo?\tWho wrote Hamlet?\t0",
        ],
    },
    "STS-B": {
        "train.tsv": [
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t"
            "sentence1\tsentence2\tscore",
            "0\tmain\tf\t2012\t1\tnone\tnone\tA man plays.\tA man is playing.\t4.800",
            "1\tmain\tf\t2012\t2\tnone\tnone\tA cat eats.\tA car drives.\t0.250",
            "2\tmain\tf\t2012\t3\tnone\tnone\tKids run.\tChildren run.\t5.000",
        ],
        "dev.tsv": [
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t"
            "sentence1\tsentence2\tscore",
            "0\tmain\tf\t2013\t1\tnone\tnone\tA bird sings.\tA bird is singing.\t4.000",
            "1\tmain\tf\t2013\t2\tnone\tnone\tIt rains.\tShe cooks.\t0.000",
        ],
    },
    "MNLI": {
        "train.tsv": [
            MNLI_TRAIN_HEAD,
            mnli_row(0, "He ran home.", "He moved.", "entailment"),
            mnli_row(1, 'She is "tall".', "She is short.", "contradiction"),
            mnli_row(2, "They met.", "They met twice.", "neutral"),
        ],
        "dev_matched.tsv": [
            MNLI_DEV_HEAD,
            mnli_row(3, "The shop opened.", "It opened.", "entailment", True),
            mnli_row(4, "The shop closed.", "It is open.", "contradiction", True),
        ],
        "dev_mismatched.tsv": [
            MNLI_DEV_HEAD,
            mnli_row(5, "A letter came.", "Mail came.", "entailment", True),
            mnli_row(6, "A letter came.", "It was late.", "neutral", True),
        ],
    },
    "QNLI": {
        "train.tsv": [
            "index\tquestion\tsentence\tlabel",
            "0\tWho built it?\tIt was built by Ann.\tentailment",
            "1\tWhen was it built?\tIt is red.\tnot_entailment",
            "2\tWhere is it?\tIt stands in Rome.\tentailment",
        ],
        "dev.tsv": [
            "index\tquestion\tsentence\tlabel",
            "0\tWho won?\tBen won the race.\tentailment",
            "1\tWhy?\tThe sky is grey.\tnot_entailment",
        ],
    },
    "RTE": {
        "train.tsv": [
            "index\tsentence1\tsentence2\tlabel",
            "0\tAnn bought a car.\tAnn owns a car.\tentailment",
            "1\tBen slept.\tBen ran a race.\tnot_entailment",
            "2\tThe team won.\tThe team played.\tentailment",
        ],
        "dev.tsv": [
            "index\tsentence1\tsentence2\tlabel",
            "0\tIt snowed.\tIt was cold.\tentailment",
            "1\tIt snowed.\tIt was hot.\tnot_entailment",
        ],
    },
    "WNLI": {
        "train.tsv": [
            "index\tsentence1\tsentence2\tlabel",
            "0\tThe cup fell on the plate and it broke.\tThe plate broke.\t1",
            "1\tAnn thanked Sue because she helped.\tAnn helped.\t0",
            "2\tThe box would not fit in the car because it was big.\tThe box was big.\t1",
        ],
        "dev.tsv": [
            "index\tsentence1\tsentence2\tlabel",
            "0\tTom called Jim because he was lonely.\tTom was lonely.\t1",
            "1\tTom called Jim because he was lonely.\tJim was lonely.\t0",
        ],
    },
    "snli_1.0": {
        "snli_1.0_train.txt": [
            SNLI_HEAD,
            "entailment\tp\th\tp\th\tA man sits.\tA person sits.\tc1\tp1\te",
            "-\tp\th\tp\th\tA man sits.\tNobody sits.\tc1\tp2\tn",
            "neutral\tp\th\tp\th\tA man sits.\tA man waits.\tc1\tp3\tn",
            "contradiction\tp\th\tp\th\tA dog runs.\tA cat runs.\tc2\tp4\tc",
        ],
        "snli_1.0_dev.txt": [
            SNLI_HEAD,
            "neutral\tp\th\tp\th\tKids play.\tKids laugh.\tc3\tp5\tn",
            "entailment\tp\th\tp\th\tKids play.\tKids move.\tc3\tp6\te",
        ],
    },
    "tsv_format": {
        "scitail_1.0_train.tsv": [
            "Plants need light.\tLight helps plants grow.\tentails",
            "Iron rusts.\tGold is soft.\tneutral",
            "Ice melts.\tHeat melts ice.\tentails",
        ],
        "scitail_1.0_dev.tsv": [
            "Water boils.\tWater gets hot.\tentails",
            "Rocks erode.\tBirds fly.\tneutral",
        ],
        "scitail_1.0_test.tsv": [
            "Sound travels.\tSound moves.\tentails",
            "Cells divide.\tStars shine.\tneutral",
        ],
    },
}

EXPECTED_DEV_LABELS = {
    "cola": [0, 1],
    "sst2": [1, 0],
    "mrpc": [0, 1],
    "qqp": [1, 0],
    "stsb": [4.0, 0.0],
    "mnli": [0, 2],
    "mnli_mm": [0, 1],
    "qnli": [0, 1],
    "rte": [0, 1],
    "wnli": [1, 0],
    "snli_hub": [1, 0],
    "scitail": [0, 1],
}


@pytest.fixture(scope="module")
def glue_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("glue_data")
    for folder, files in GLUE_DATA.items():
        (root / folder).mkdir()
        for name, lines in files.items():
            (root / folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_all_recipes_are_registered() -> None:
    expected = {
        "cola",
        "sst2",
        "mrpc",
        "qqp",
        "stsb",
        "mnli",
        "mnli_mm",
        "qnli",
        "rte",
        "wnli",
        "snli_hub",
        "scitail",
    }
    assert set(GLUE_TASKS) == expected
    assert set(GLUE_FILES) == expected
    for name in expected:
        assert registry._REGISTRY[name] == GLUE_TASKS[name]


def test_recipe_metrics_and_hub_sources() -> None:
    assert GLUE_TASKS["cola"].metrics == ["mcc"]
    assert GLUE_TASKS["mrpc"].metrics == ["f1", "accuracy"]
    assert GLUE_TASKS["qqp"].metrics == ["f1", "accuracy"]
    assert GLUE_TASKS["stsb"].type == "regression"
    assert GLUE_TASKS["stsb"].metrics == ["pearson", "spearman"]
    for name in ("sst2", "mnli", "mnli_mm", "qnli", "rte", "wnli", "snli_hub", "scitail"):
        assert GLUE_TASKS[name].metrics == ["accuracy"]
    sst2 = GLUE_TASKS["sst2"].source
    assert (sst2.kind, sst2.hub_name, sst2.hub_config) == ("hub", GLUE_HUB, "sst2")
    mm = GLUE_TASKS["mnli_mm"].source
    assert mm.hub_config == "mnli"
    assert mm.split_names == {"train": "train", "dev": "validation_mismatched"}
    assert GLUE_TASKS["mnli"].source.split_names["dev"] == "validation_matched"
    assert GLUE_TASKS["scitail"].source.hub_config == "tsv_format"


@pytest.mark.parametrize("name", sorted(EXPECTED_DEV_LABELS))
def test_every_task_loads_from_a_glue_folder(glue_root: Path, name: str) -> None:
    spec = glue_task(name, str(glue_root))
    assert spec.source == SourceSpec(kind="glue_dir", root=str(glue_root), layout=GLUE_FILES[name])
    examples, labels = load_task_examples(spec)
    assert labels == list(GLUE_TASKS[name].labels or [])
    assert len(examples["train"]) == 3
    assert [e["label"] for e in examples["dev"]] == EXPECTED_DEV_LABELS[name]
    assert ("test" in examples) == (name == "scitail")  # the SNLI folder here has no test
    first = examples["train"][0]
    assert first["text_a"].strip() and (first["text_b"] is None) == (name in ("cola", "sst2"))


def test_cola_without_header(glue_root: Path) -> None:
    records = read_split(glue_task("cola", str(glue_root)), "train")
    assert records[0]["sentence"] == "The cat sat on the mat."
    assert records[2]["sentence"] == 'She reads "old" books.'
    assert [r["label"] for r in records] == ["acceptable", "unacceptable", "acceptable"]
    assert [r["_row"] for r in records] == [1, 2, 3]
    assert records[0]["_file"] == str(glue_root / "CoLA" / "train.tsv")


def test_mnli_matched_and_mismatched(glue_root: Path) -> None:
    matched, _ = load_task_examples(glue_task("mnli", str(glue_root)))
    mismatched, _ = load_task_examples(glue_task("mnli_mm", str(glue_root)))
    assert matched["train"] == mismatched["train"]
    assert matched["train"][1]["text_a"] == 'She is "tall".'
    assert [e["text_a"] for e in matched["dev"]] == ["The shop opened.", "The shop closed."]
    assert [e["text_a"] for e in mismatched["dev"]] == ["A letter came.", "A letter came."]
    assert mismatched["dev"][0]["_file"].endswith("dev_mismatched.tsv")


def test_snli_rows_without_gold_label_are_dropped(glue_root: Path) -> None:
    records = read_split(glue_task("snli_hub", str(glue_root)), "train")
    assert [r["label"] for r in records] == ["entailment", "neutral", "contradiction"]
    assert [r["_row"] for r in records] == [2, 4, 5]


def test_root_may_be_the_task_folder(glue_root: Path) -> None:
    records = read_split(glue_task("rte", str(glue_root / "RTE")), "dev")
    assert len(records) == 2


def test_yaml_override_selects_the_glue_folder(
    glue_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "_loaded", True)  # only the GLUE catalog is needed here
    entry = {
        "name": "sst2",
        "source": {"kind": "glue_dir", "root": str(glue_root)},
        "max_train_examples": 2,
    }
    spec = registry.resolve_task(entry, "tasks[0]")
    assert spec.labels == ["negative", "positive"] and spec.metrics == ["accuracy"]
    examples, labels = load_task_examples(spec)
    assert len(examples["train"]) == 2 and labels == ["negative", "positive"]
    assert "test" not in examples


def test_missing_glue_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        read_split(glue_task("qnli", str(tmp_path)), "train")
    assert str(info.value).startswith(f"{tmp_path / 'QNLI' / 'train.tsv'}: file not found")
    (tmp_path / "QNLI").mkdir()
    (tmp_path / "QNLI" / "dev.tsv").write_text("index\tquestion\ttext\tlabel\n")
    with pytest.raises(DataError) as info:
        read_split(glue_task("qnli", str(tmp_path)), "dev")
    message = str(info.value)
    assert "dev.tsv" in message and "missing column 'sentence'" in message
    assert "index, question, text, label" in message
    assert read_split(glue_task("qnli", str(tmp_path)), "test") is None


def test_short_glue_row_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "CoLA").mkdir()
    (tmp_path / "CoLA" / "train.tsv").write_text("s\t1\t\tGood one.\ns\t0\n")
    with pytest.raises(DataError, match=r"CoLA/train.tsv, line 2: expected at least 4"):
        read_split(glue_task("cola", str(tmp_path)), "train")


def test_unknown_label_in_glue_folder(tmp_path: Path) -> None:
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tmaybe\n"
    )
    with pytest.raises(DataError) as info:
        load_task_examples(glue_task("rte", str(tmp_path)), ("dev",))
    assert "RTE/dev.tsv, row 2" in str(info.value) and "'maybe'" in str(info.value)


def test_glue_dir_for_another_task_uses_paths(tmp_path: Path) -> None:
    (tmp_path / "mine.tsv").write_text("text\tlabel\nhello\tgreet\n")
    spec = TaskSpec(
        name="greetings",
        type="classification",
        text_columns=["text"],
        label_column="label",
        source=SourceSpec(kind="glue_dir", root=str(tmp_path), paths={"train": "mine.tsv"}),
    )
    assert read_split(spec, "train")[0]["text"] == "hello"
    assert read_split(spec, "dev") is None
    spec.source.paths = {}
    with pytest.raises(DataError, match="source.paths"):
        read_split(spec, "train")


def test_glue_task_unknown_name() -> None:
    with pytest.raises(KeyError):
        glue_task("superglue")
    assert glue_task("cola").source.kind == "hub"


def test_hub_and_folder_labels_agree(glue_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
            "idx": datasets.Value("int32"),
        }
    )
    table = datasets.Dataset.from_dict(
        {
            "premise": ["The shop opened.", "The shop closed."],
            "hypothesis": ["It opened.", "It is open."],
            "label": [0, 2],
            "idx": [0, 1],
        },
        features=features,
    )
    calls = []

    def fake_load(name, config=None, **kwargs):
        calls.append((name, config, kwargs["split"]))
        return table

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    hub, hub_labels = load_task_examples(glue_task("mnli"), ("dev",))
    local, local_labels = load_task_examples(glue_task("mnli", str(glue_root)), ("dev",))
    assert calls == [(GLUE_HUB, "mnli", "validation_matched")]
    assert hub_labels == local_labels
    assert [e["label"] for e in hub["dev"]] == [e["label"] for e in local["dev"]] == [0, 2]
    assert hub["dev"][0]["_file"] == "nyu-mll/glue:mnli/validation_matched"


def test_glue_test_split_is_not_read_from_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("no call"))
    assert read_split(glue_task("sst2"), "test") is None
