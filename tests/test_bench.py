"""`layer bench`: the machinery runs and writes the table; no timing is asserted (timings are not tests)."""

import math

import pandas as pd
import pytest

from layer.bench import BENCH_COLUMNS, Row, bench_end_to_end, run_all


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
