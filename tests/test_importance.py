"""Permutation importance: the shuffle arithmetic on a known scorer, and on planted rows whose
teacher gives some fields no weight, on a model_dir's split and on its export fed the same raw
rows; the command's table, JSON and chart, and its refusals."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ctr_tf import config as cfg_lib
from ctr_tf import importance, trainer
from ctr_tf.data import convert as convert_lib
from ctr_tf.data import synthetic
from pipelines import feature_importance
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_field_the_scorer_ignores_has_no_importance_and_a_group_moves_together():
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(4000, 3)), "w": rng.normal(size=4000)}
    labels = (rng.random(4000) < 1 / (1 + np.exp(-(2 * data["x"][:, 0] + data["w"])))).astype(float)
    score = lambda d: 1 / (1 + np.exp(-(2 * d["x"][:, 0] + d["w"])))  # noqa: E731  (x[:, 1], x[:, 2] unused)
    fields = {"a": importance.Field("a", (("x", 0),)), "b": importance.Field("b", (("x", 1),)),
              "c": importance.Field("c", (("x", 2),)), "w": importance.Field("w", (("w", None),))}
    chosen = importance.select(fields, [], importance.parse_groups("aw=a,w"))
    result = importance.measure(score, data, labels, chosen, repeats=3, seed=1)
    by = {r["name"]: r for r in result["fields"]}
    assert by["b"]["auc_drop_mean"] == by["c"]["auc_drop_mean"] == 0.0 and by["b"]["auc_drop_std"] == 0.0
    assert by["aw"]["auc_drop_mean"] > by["a"]["auc_drop_mean"] > by["w"]["auc_drop_mean"] > 0.05
    assert [r["name"] for r in result["fields"]][:3] == ["aw", "a", "w"] and by["aw"]["members"] == ["a", "w"]
    assert len(by["a"]["auc_drops"]) == 3 and by["a"]["auc_drop_std"] > 0 and result["passes"] == 1 + 5 * 3
    # the same seed, the same shuffles
    again = importance.measure(score, data, labels, chosen, repeats=3, seed=1)
    assert [r["auc_drops"] for r in again["fields"]] == [r["auc_drops"] for r in result["fields"]]
    with pytest.raises(importance.ImportanceError, match="unknown field.*zz"):
        importance.select(fields, ["zz"], {})
    with pytest.raises(importance.ImportanceError, match="is not NAME=FIELD"):
        importance.parse_groups("oops")


NULL = ("C2", "C5", "C9", "I3", "I8")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    d = tmp_path_factory.mktemp("importance")
    info = synthetic.write(str(d / "train.tsv"), 30000, seed=5, scale=0.0005, null_fields=NULL, explain=True)
    synthetic.write(str(d / "heldout.tsv"), 6000, seed=5, scale=0.0005, null_fields=NULL, data_seed=9)
    convert_lib.convert(convert_lib.ConvertConfig(inputs=(str(d / "train.tsv"),), test_inputs=(str(d / "heldout.tsv"),),
                                                  output_dir=str(d / "data"), split=(9, 1, 0), progress=False))
    cfg = cfg_lib.ExperimentConfig(
        data=cfg_lib.DataConfig(data_dir=str(d / "data")),
        model=cfg_lib.model_config("deepfm", embedding_dim=8, hidden_units=(32,), embedding_table_l2=5e-5),
        train=cfg_lib.TrainConfig(model_dir=str(d / "model"), epochs=3, batch_size=256, learning_rate=2e-3,
                                  refit_intercept=True))
    out = trainer.run(cfg)
    return {"dir": d, "shares": info["field_shares"], "export": out["export"]}


def test_planted_null_fields_are_within_noise_of_zero_and_the_strongest_come_first(planted):
    score, data, labels, fields, _ = feature_importance.from_model_dir(str(planted["dir"] / "model"), "test", None, 8192)
    result = importance.measure(score, data, labels, importance.select(fields, [], {}), repeats=3, seed=0)
    by = {r["name"]: r for r in result["fields"]}
    for name in NULL:
        assert abs(by[name]["auc_drop_mean"]) <= 3 * by[name]["auc_drop_std"] + 0.002, by[name]
    shares = planted["shares"]
    assert all(shares[n] == 0 for n in NULL)
    top_model = [r["name"] for r in result["fields"][:5]]
    top_teacher = sorted(shares, key=lambda n: -shares[n])[:8]
    assert len(set(top_model) & set(top_teacher)) >= 4, (top_model, top_teacher)
    # the export, fed the same rows raw, agrees
    score_x, data_x, labels_x, fields_x, _ = feature_importance.from_export(planted["export"],
                                                                           str(planted["dir"] / "heldout.tsv"), 8192)
    exported = importance.measure(score_x, data_x, labels_x, importance.select(fields_x, [], {}), repeats=3, seed=0)
    assert exported["base"]["auc"] == pytest.approx(result["base"]["auc"], abs=1e-6)
    order = {r["name"]: r["auc_drop_mean"] for r in exported["fields"]}
    for r in result["fields"]:
        assert order[r["name"]] == pytest.approx(r["auc_drop_mean"], abs=1e-5)


def test_the_command_writes_its_table_json_and_chart_and_refuses_what_it_cannot_measure(planted, tmp_path):
    """--fields and --groups; a split without rows and raw rows of another format are refused,
    naming them."""
    cmd = [sys.executable, "-m", "pipelines.feature_importance", f"--model_dir={planted['dir'] / 'model'}",
           "--repeats=2", "--fields=C3,I1,C5", "--groups=both=C3,I1", f"--output_dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| rank | field | AUC drop |" in proc.stdout and "both (C3, I1)" in proc.stdout
    result = json.load(open(tmp_path / "importance.json"))
    assert [r["name"] for r in result["fields"]][0] == "both" and result["repeats"] == 2
    assert os.path.getsize(tmp_path / "importance.png") > 5000 and (tmp_path / "importance.md").exists()
    with pytest.raises(importance.ImportanceError, match=r"--split=valid: .* has no rows there \(splits with rows: "
                                                        r"train, test\)"):
        feature_importance.from_model_dir(str(planted["dir"] / "model"), "valid", None, 8192)
    avazu = helpers.shared_file("avazu", "deepctr_avazu_sample.csv")
    with pytest.raises(importance.ImportanceError, match="is avazu_csv with columns that do not match the export's "
                                                         "inputs: missing C10, C11"):
        feature_importance.from_export(planted["export"], avazu, 8192)
