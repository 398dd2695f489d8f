"""The three example models: shapes, short trainings that beat chance, resuming, two
processes (gloo) against one, and clear errors on bad data."""
import io
import os
import zipfile

import pytest
import torch
import torch.multiprocessing as mp

from fastrnn.examples import CharLanguageModel, SentimentClassifier, Sorter
from fastrnn.examples import cli as train_cli
from fastrnn.examples import common
from fastrnn.examples.data import DataError, encode_text, load_labelled_csv
from fastrnn.examples.data import vader


def test_shapes():
    codes = torch.randint(0, 128, (3, 9))
    lengths = torch.tensor([9, 4, 1])
    assert SentimentClassifier(4, hidden_size=8, num_layers=2)(codes, lengths).shape == (3, 4)
    logits, (h, c) = CharLanguageModel("lstm", 8, 3)(codes)
    assert logits.shape == (3, 9, 128) and h.shape == (3, 3, 8) and c.shape == (3, 3, 8)
    assert Sorter(32, 8, 2)(torch.randint(1, 33, (5, 32))).shape == (5, 32, 33)


@pytest.mark.parametrize("model_cls,args", [
    (SentimentClassifier, (lambda m: (torch.randint(0, 128, (2, 7)), torch.tensor([7, 3])))),
    (CharLanguageModel, (lambda m: (torch.randint(0, 128, (2, 7)),))),
    (Sorter, (lambda m: (torch.randint(1, 33, (2, 32)),))),
])
def test_torch_layers_switch_gives_the_same_network(model_cls, args):
    kwargs = {SentimentClassifier: dict(num_classes=3, hidden_size=8, num_layers=2),
              CharLanguageModel: dict(hidden_size=8, num_layers=2),
              Sorter: dict(hidden_size=8, num_layers=2)}[model_cls]
    torch.manual_seed(0)
    fast = model_cls(**kwargs).double()
    reference = model_cls(use_torch=True, **kwargs).double()
    reference.load_state_dict(fast.state_dict())
    inputs = args(fast)
    out_fast = fast(*inputs)
    out_ref = reference(*inputs)
    out_fast = out_fast[0] if isinstance(out_fast, tuple) else out_fast
    out_ref = out_ref[0] if isinstance(out_ref, tuple) else out_ref
    torch.testing.assert_close(out_fast, out_ref)


def write_sentiment_csv(path, n=400):
    """Tiny labelled texts whose class shows in their words."""
    words = {"positive": ["good", "great", "lovely"], "negative": ["bad", "awful", "sad"]}
    g = torch.Generator().manual_seed(0)
    with open(path, "w") as f:
        f.write("text,label\n")
        for i in range(n):
            label = ["positive", "negative"][i % 2]
            word = words[label][int(torch.randint(3, (1,), generator=g))]
            f.write(f"the film was {word} today,{label}\n")


@pytest.mark.slow
def test_classifier_beats_chance(tmp_path):
    csv = tmp_path / "sentiment.csv"
    write_sentiment_csv(csv)
    metrics = train_cli.main(["classify", "--data", str(csv), "--hidden", "16", "--layers",
                              "1", "--steps", "60", "--batch", "16", "--lr", "1e-2",
                              "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert metrics["accuracy"] >= 0.9  # chance: 0.5
    assert (tmp_path / "run" / "confusion.png").exists()


@pytest.mark.slow
def test_charlm_beats_chance_and_generates(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("abcabcabd " * 400)
    metrics = train_cli.main(["charlm", "--text", str(text), "--hidden", "32", "--layers", "1",
                              "--steps", "120", "--batch", "8", "--seq", "32", "--lr", "1e-2",
                              "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert metrics["bits_per_char"] < 1.5  # uniform over 5 symbols: 2.3 bits; over 128: 7
    capsys.readouterr()
    sample = train_cli.main(["generate", str(tmp_path / "run" / "checkpoint.pt"), "--length",
                             "40", "--device", "cpu"])
    assert len(sample) == 40 and set(sample) <= set("abcd \n")


@pytest.mark.slow
def test_sorter_beats_chance(tmp_path):
    metrics = train_cli.main(["sort", "--length", "8", "--values", "8", "--hidden", "48",
                              "--layers", "1", "--steps", "150", "--batch", "64", "--lr",
                              "1e-2", "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert metrics["per_element"] > 0.5  # chance: 1/8


@pytest.mark.slow
def test_resume_continues_the_same_run(tmp_path):
    # a constant rate: the cosine schedule (and the warm-up's cap) follow --steps, so there
    # only an interrupted run of the same length resumes into the same weights
    common = ["sort", "--length", "6", "--values", "6", "--hidden", "16", "--layers", "1",
              "--batch", "16", "--device", "cpu", "--save-every", "5", "--schedule", "constant",
              "--warmup", "0"]
    train_cli.main(common + ["--steps", "10", "--out", str(tmp_path / "straight")])
    train_cli.main(common + ["--steps", "5", "--out", str(tmp_path / "split")])
    train_cli.main(common + ["--steps", "10", "--out", str(tmp_path / "split"), "--resume"])
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert split["step"] == straight["step"] == 10
    for name, value in straight["model"].items():
        torch.testing.assert_close(split["model"][name], value, rtol=0, atol=0)
    metrics = train_cli.main(["evaluate", str(tmp_path / "split" / "checkpoint.pt"),
                              "--length", "6", "--values", "6", "--device", "cpu"])
    straight_metrics = train_cli.main(["evaluate", str(tmp_path / "straight" / "checkpoint.pt"),
                                       "--device", "cpu"])
    assert metrics == straight_metrics  # the same weights evaluate the same
    assert metrics["per_element"] > 1 / 6  # ten steps already beat chance


def _ddp_worker(rank, world, init_file, result_file):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    torch.manual_seed(0)
    model = DistributedDataParallel(Sorter(6, 16, 1))
    inputs = torch.Generator().manual_seed(5)
    numbers = torch.randint(1, 7, (8, 6), generator=inputs)
    targets = numbers.sort(dim=1).values
    mine = slice(rank * 4, rank * 4 + 4)
    logits = model(numbers[mine])
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), targets[mine].reshape(-1))
    loss.backward()
    if rank == 0:
        torch.save([p.grad for p in model.module.parameters()], result_file)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    result = tmp_path / "grads.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(result)), nprocs=2)
    torch.manual_seed(0)
    model = Sorter(6, 16, 1)
    numbers = torch.randint(1, 7, (8, 6), generator=torch.Generator().manual_seed(5))
    logits = model(numbers)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 7),
                                             numbers.sort(dim=1).values.reshape(-1))
    loss.backward()
    for a, b in zip(torch.load(result, weights_only=True), model.parameters()):
        torch.testing.assert_close(a, b.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_evaluate_uses_the_data_settings_it_was_trained_with(tmp_path, capsys):
    train_cli.main(["sort", "--length", "5", "--values", "7", "--hidden", "16", "--layers",
                    "1", "--steps", "5", "--batch", "8", "--out", str(tmp_path / "sort"),
                    "--device", "cpu"])
    metrics = train_cli.main(["evaluate", str(tmp_path / "sort" / "checkpoint.pt"),
                              "--device", "cpu"])  # no --values 7 --length 5 needed
    again = train_cli.main(["evaluate", str(tmp_path / "sort" / "checkpoint.pt"), "--values",
                            "7", "--length", "5", "--device", "cpu"])
    assert metrics == again
    csv = tmp_path / "sentiment.csv"
    write_sentiment_csv(csv)
    train_cli.main(["classify", "--data", str(csv), "--hidden", "8", "--layers", "1",
                    "--steps", "3", "--batch", "8", "--out", str(tmp_path / "cls"),
                    "--device", "cpu"])
    capsys.readouterr()
    metrics = train_cli.main(["evaluate", str(tmp_path / "cls" / "checkpoint.pt"),
                              "--device", "cpu"])
    assert set(metrics["f1"]) == {"negative", "positive"}  # the CSV's classes, not VADER's
    total = sum(map(sum, metrics["confusion"]))
    assert total == 40  # the CSV's held-out tenth


def _carry_worker(rank, world, init_file, result_file):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    ctx = common.Context(torch.device("cpu"), rank, world)
    carry = (torch.full((1, 2, 3), float(rank)), torch.full((1, 2, 3), 10.0 + rank))
    gathered = common.gather_carry(carry, ctx)
    if rank == 0:
        torch.save(gathered, result_file)
    dist.destroy_process_group()


@pytest.mark.slow
def test_each_rank_saves_and_resumes_its_own_carried_state(tmp_path):
    result = tmp_path / "carry.pt"
    mp.spawn(_carry_worker, args=(2, str(tmp_path / "init"), str(result)), nprocs=2)
    saved = torch.load(result, weights_only=True)
    for rank in range(2):
        ctx = common.Context(torch.device("cpu"), rank, 2)
        h, c = common.carry_for_rank(saved, ctx)
        assert torch.equal(h, torch.full((1, 2, 3), float(rank)))
        assert torch.equal(c, torch.full((1, 2, 3), 10.0 + rank))
    # a different number of processes starts the streams afresh
    assert common.carry_for_rank(saved, common.Context(torch.device("cpu"))) is None


# ---- bad data

def test_empty_text():
    with pytest.raises(DataError, match="empty text"):
        encode_text("", "row 3")


def test_non_ascii(tmp_path):
    with pytest.raises(DataError, match=r"non-ASCII character 'é' at position 2"):
        encode_text("caf\u00e9"[:2] + "\u00e9", "row 1")
    assert encode_text("caf\u00e9", non_ascii="replace") == [ord(c) for c in "cafe"]


def test_unknown_label(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_text("text,label\nfine day,positive\nodd day,irrelevant\n")
    with pytest.raises(DataError, match=r"data.csv:3: unknown label 'irrelevant'"):
        load_labelled_csv(str(csv), classes=["negative", "positive"])


def test_missing_file_and_columns(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_labelled_csv(str(tmp_path / "absent.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,score\nhello,1\n")
    with pytest.raises(DataError, match="expected a header with columns 'text' and 'label'"):
        load_labelled_csv(str(bad))


def test_cli_reports_bad_data_cleanly(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["classify", "--data", str(tmp_path / "absent.csv"), "--steps", "1"])
    assert exit_info.value.code == 2
    assert "absent.csv: no such file" in capsys.readouterr().err


def test_vader_reading_from_the_wheel(tmp_path, monkeypatch):
    """The wheel's four ground-truth files become labelled texts; the SHA-256 is checked."""
    wheel = tmp_path / vader.WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        for name in vader.SETS:
            z.writestr(f"{vader.FOLDER}{name}_GroundTruth.txt",
                       "id\tsentiment\ttext\r\n1\t2.5\tlovely day\r\n2\t-1.2\tawful\r\n"
                       "3\t0.1\tit is tuesday\r\n")
    monkeypatch.setenv("FASTRNN_DATA", str(tmp_path))
    with pytest.raises(DataError, match="SHA-256"):
        vader.load_vader()
    import hashlib
    monkeypatch.setattr(vader, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    texts, labels, classes, sources = vader.load_vader()
    assert classes == ["negative", "neutral", "positive"]
    assert labels == [2, 0, 1] * 4 and len(texts) == 12 and sources[0] == "tweets"


# ---------------------------------------------------------------- curves and recipes

TINY_SORT = ["sort", "--length", "5", "--values", "5", "--hidden", "12", "--layers", "1",
             "--batch", "16", "--device", "cpu"]


def test_metrics_csv_curve_and_resume(tmp_path):
    from fastrnn.examples.curves import read_metrics
    out = str(tmp_path / "run")
    train_cli.main(TINY_SORT + ["--steps", "10", "--eval-every", "5", "--save-every", "5",
                                "--out", out])
    rows = read_metrics(os.path.join(out, "metrics.csv"))
    assert [r["step"] for r in rows] == [5, 10]
    assert all(r["metric"] == "per_element" and 0 <= r["value"] <= 1 for r in rows)
    assert 0 < rows[0]["seconds"] <= rows[1]["seconds"]
    assert rows[0]["loss"] > 0
    assert os.path.getsize(os.path.join(out, "curve.png")) > 0
    # a resumed run keeps the rows up to its checkpoint and goes on after them
    with open(os.path.join(out, "metrics.csv"), "a") as f:
        f.write("15,9.0,1.0,per_element,0.5\n")  # a row after the checkpoint: dropped
    train_cli.main(TINY_SORT + ["--steps", "20", "--eval-every", "5", "--out", out,
                                "--resume"])
    rows = read_metrics(os.path.join(out, "metrics.csv"))
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert rows[2]["seconds"] >= rows[1]["seconds"] and rows[2]["seconds"] != 9.0


def test_stop_at_and_compare(tmp_path, capsys):
    fast, ref = str(tmp_path / "fast"), str(tmp_path / "ref")
    train_cli.main(TINY_SORT + ["--steps", "20", "--eval-every", "4", "--out", fast,
                                "--stop-at", "0"])
    assert torch.load(os.path.join(fast, "checkpoint.pt"), weights_only=True)["step"] == 4
    train_cli.main(TINY_SORT + ["--steps", "8", "--eval-every", "4", "--out", ref,
                                "--torch-layers"])
    capsys.readouterr()
    png = str(tmp_path / "both.png")
    lines = train_cli.main(["compare", fast, ref, "--target", "0", "--png", png])
    assert lines[0].startswith(f"fastrnn ({fast}): per_element 0") and "step 4" in lines[0]
    assert lines[1].startswith(f"torch.nn ({ref}): per_element 0")
    assert "torch.nn" in lines[2] and lines[2].endswith("x")  # the ratio of the two times
    assert os.path.getsize(png) > 0
    lines = train_cli.main(["compare", fast, "--target", "1.01", "--png", png])
    assert "did not reach per_element 1.01" in lines[0]
    with pytest.raises(SystemExit):
        train_cli.main(["compare", str(tmp_path / "absent")])
    assert "no metrics.csv" in capsys.readouterr().err


def test_compare_survives_a_run_that_reached_the_target_at_zero_seconds():
    from fastrnn.examples.curves import compare_runs
    row = dict(step=4, seconds=0.0, loss=1.0, metric="per_element", value=0.5)
    lines = compare_runs({"fast": [row], "ref": [dict(row, seconds=0.02)]}, 0.1, True)
    assert "not measurable" in lines[2]
    lines = compare_runs({"fast": [dict(row, seconds=0.01)], "ref": [dict(row, seconds=0.02)]},
                         0.1, True)
    assert lines[2].endswith("= 2.00x")


def test_recipes_quick_and_explicit_flags():
    from fastrnn.examples import TASKS
    for name, task_cls in TASKS.items():
        args = train_cli.apply_recipe(train_cli.parser().parse_args([name]))
        assert {k: getattr(args, k) for k in task_cls.defaults} == task_cls.defaults
        args = train_cli.apply_recipe(train_cli.parser().parse_args([name, "--quick",
                                                                      "--hidden", "8"]))
        assert args.hidden == 8 and args.steps == task_cls.quick["steps"]
        assert task_cls.quick["steps"] < task_cls.defaults["steps"]


def test_cosine_schedule():
    from fastrnn.examples.curves import learning_rate_factor
    factors = [learning_rate_factor(step, 100, 10) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))  # decays after the warm-up
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)
    assert learning_rate_factor(5, 100, 0) <= 1.0
    constant = [learning_rate_factor(step, 100, 10, "constant") for step in range(100)]
    assert constant[:10] == factors[:10] and set(constant[9:]) == {1.0}


def test_classifier_batches_cover_an_epoch_by_length(tmp_path):
    from fastrnn.examples.classify import ClassifySettings, ClassifyTask
    csv = tmp_path / "sentiment.csv"
    write_sentiment_csv(csv)
    task = ClassifyTask(ClassifySettings(hidden=8, layers=1, steps=1, batch=4, lr=1e-3,
                                         data=str(csv)))
    batches = task.epoch_batches(0)
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen)) and len(seen) > len(task.train) - 4
    assert all(len(b) == 4 for b in batches)
    assert task.epoch_batches(1) != batches  # a new shuffle each epoch...
    assert ClassifyTask(task.settings).epoch_batches(0) == batches  # ...the same every run


@pytest.mark.parametrize("flags, layer_type", [
    (["--layer-norm"], "LayerNormGRU"), (["--zoneout", "0.1"], "GRU"),
    (["--layer-norm", "--no-reset-after", "--zoneout", "0.1"], "LayerNormGRU")])
def test_layer_norm_and_zoneout_flags_train_and_evaluate(tmp_path, flags, layer_type):
    csv = tmp_path / "sentiment.csv"
    write_sentiment_csv(csv)
    metrics = train_cli.main(["classify", "--data", str(csv), "--hidden", "16", "--layers",
                              "1", "--steps", "60", "--batch", "16", "--lr", "1e-2", *flags,
                              "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert metrics["accuracy"] >= 0.9  # chance: 0.5
    state = common.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    model = SentimentClassifier(**state["config"])
    assert type(model.rnn).__name__ == layer_type
    assert ("reset_after=False" in repr(model.rnn)) == ("--no-reset-after" in flags)
    if "--zoneout" in flags:
        assert model.rnn.zoneout == 0.1


def test_recurrent_layer_options_are_checked():
    assert type(common.recurrent_layer("lstm", 4, 6, 2, layer_norm=True)).__name__ == \
        "LayerNormLSTM"
    with pytest.raises(ValueError, match="torch.nn has no layer-normalised LSTM"):
        common.recurrent_layer("lstm", 4, 6, 1, use_torch=True, layer_norm=True)
    with pytest.raises(ValueError, match="torch.nn has no zoneout GRU"):
        common.recurrent_layer("gru", 4, 6, 1, use_torch=True, zoneout=0.1)
    both = common.recurrent_layer("gru", 4, 6, 1, layer_norm=True, zoneout=0.1)
    assert type(both).__name__ == "LayerNormGRU" and both.zoneout == 0.1
    with pytest.raises(ValueError, match="zoneout"):
        common.recurrent_layer("gru", 4, 6, 1, zoneout=1.5)
