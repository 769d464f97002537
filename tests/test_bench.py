"""`layer bench`: the machinery runs and writes the table; no timing is asserted (timings are not tests)."""

import math

import pandas as pd
import pytest

from layer.bench import BENCH_COLUMNS, Row, bench_end_to_end, bench_grid, run_all


def test_ratio_orientation():
    assert Row("s", "throughput", 2.0, "x/s", 1.0).ratio() == 2.0  # at least 1, got 2: met twice over
    assert Row("s", "seconds", 2.0, "s", 1.0, at_least=False).ratio() == 0.5  # at most 1 s, took 2 s
    assert math.isnan(Row("s", "no bar", 2.0, "s").ratio())


def test_end_to_end_reads_benchmark_files(tmp_path):
    for rel, seconds in [("synth/chunk0.tsv", 3.0), ("synth/chunk1.tsv", 5.0), ("train/bmode/fold0.tsv", 10.0)]:
        path = tmp_path / "results" / "benchmarks" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"s": [seconds], "h:m:s": ["0:00:01"]}).to_csv(path, sep="\t", index=False)
    rows = {r.measure: r.value for r in bench_end_to_end(tmp_path / "results", cores=2, startup={"train": 4.0})}
    assert rows["synth: 2 jobs"] == 8.0 and rows["train: 1 jobs"] == 10.0
    assert rows["train: start-up share"] == pytest.approx(4.0 / 10.0) and "synth: start-up share" not in rows
    assert rows["all jobs, summed"] == 18.0
    assert rows["critical path (slowest job of each stage)"] == 15.0


def _bench(root, rel, seconds):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"s": [seconds], "h:m:s": ["0:00:01"]}).to_csv(path, sep="\t", index=False)


def test_grid_rows_by_hand(tmp_path):
    # Two studies: null/seed0 = 2 trainings of 10 s + synthesis 4 s = 24 s; a/seed0 = 1 training 10 s + 1
    # attribution 6 s = 16 s. Start-up 3 s per training, 2 s per attribution: (3 * 3 + 2) / 40.
    for rel, seconds in [("null/seed0/benchmarks/train/bmode/fold0.tsv", 10.0),
                         ("null/seed0/benchmarks/train/bmode/fold1.tsv", 10.0),
                         ("null/seed0/benchmarks/synth/chunk0.tsv", 4.0),
                         ("a/seed0/benchmarks/train/swe/fold0.tsv", 10.0),
                         ("a/seed0/benchmarks/attribute/swe/fold0.tsv", 6.0)]:  # fmt: skip
        _bench(tmp_path, rel, seconds)
    rows = {r.measure: r for r in bench_grid(tmp_path, {"train": 3.0, "attribute": 2.0})}
    assert rows["job-seconds per study, median of 2"].value == 20.0
    assert rows["job-seconds per study, largest"].value == 24.0 and rows["job-seconds per study, largest"].note == "null/seed0"
    assert rows["job-seconds, whole grid"].value == 40.0
    assert rows["start-up share of the grid's job-seconds"].value == pytest.approx(11.0 / 40.0)


@pytest.mark.slow
def test_quick_bench_table():
    table = run_all(None, quick=True)
    assert list(table.columns) == list(BENCH_COLUMNS)
    assert set(table.stage) == {"training", "attribution", "aggregation", "bootstrap", "synthesis", "scaling", "startup"}
    values = table.set_index("measure")["value"]
    assert (table["value"] > 0).all()
    assert values["data path efficiency (loop / compute)"] == pytest.approx(
        values.filter(like="train_loop").iloc[0] / values["same model from memory (pure compute)"]
    )
    assert table.loc[table.stage == "attribution", "measure"].str.contains("integrated_gradients cost").any()
