"""The installed package: flagfiles found by bare name, beside their includer or shipped, and a
wheel that holds everything its commands read, run from an empty directory."""
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from absl import flags

from ctr_tf import config as cfg_lib
from ctr_tf import flags as ctr_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = ctr_flags.SHIPPED_FLAGFILES


def test_a_bare_name_is_the_shipped_flagfile_and_its_include_resolves_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spelling in ("deepfm.flags", "deepfm"):
        argv, read = ctr_flags.expand_flagfiles(["t", f"--flagfile={spelling}", "--epochs=2"])
        assert read == [os.path.join(SHIPPED, "deepfm.flags"), os.path.join(SHIPPED, "common.flags")]
        # common.flags is expanded where deepfm.flags includes it (its first line), so deepfm's own
        # lines and then the command line win over it, as absl orders them
        assert argv.index("--epochs=60") < argv.index("--model=deepfm") < argv.index("--epochs=2") == len(argv) - 1
    argv, read = ctr_flags.expand_flagfiles(["t", "--flagfile", "dcn_v2.flags"])
    assert read[0] == os.path.join(SHIPPED, "dcn_v2.flags") and "--model=dcn_v2" in argv


def test_a_file_in_the_current_directory_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deepfm.flags").write_text("--model=dnn\n")
    argv, read = ctr_flags.expand_flagfiles(["t", "--flagfile=deepfm.flags"])
    assert read == [str(tmp_path / "deepfm.flags")] and argv == ["t", "--model=dnn"]


def test_includes_resolve_beside_the_including_file_from_any_directory(tmp_path, monkeypatch):
    copied = tmp_path / "recipes"
    shutil.copytree(SHIPPED, copied)
    (copied / "common.flags").write_text("--seed=7\n")  # the copy's own common.flags, not the shipped one
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    argv, read = ctr_flags.expand_flagfiles(["t", f"--flagfile={copied / 'deepfm.flags'}"])
    assert read == [str(copied / "deepfm.flags"), str(copied / "common.flags")]
    assert "--seed=7" in argv and "--epochs=60" not in argv
    argv, read = ctr_flags.expand_flagfiles(["t", "--flagfile=../recipes/fm.flags"])
    assert read[1] == str(copied / "common.flags")


def test_a_users_flagfile_includes_a_shipped_one_by_its_bare_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my.flags").write_text("# my DeepFM\n--flagfile=deepfm.flags\n--embedding_dim=4\n")
    fv = flags.FlagValues()
    ctr_flags.define_flags(fv)
    argv, read = ctr_flags.expand_flagfiles(["t", "--flagfile=mine/my.flags", "--data_dir=d", "--model_dir=m"])
    fv(argv)
    cfg = ctr_flags.config_from_flags(fv)
    assert cfg.model.name == "deepfm" and cfg.model.embedding_dim == 4 and cfg.train.epochs == 60
    text = ctr_flags.flags_text(fv, read)
    assert text.splitlines()[:3] == [f"# read --flagfile={p}" for p in
                                     (str(tmp_path / "mine" / "my.flags"), os.path.join(SHIPPED, "deepfm.flags"),
                                      os.path.join(SHIPPED, "common.flags"))]
    # flags.txt is itself a flagfile that reproduces the run
    (tmp_path / "again.flags").write_text(text)
    fv2 = flags.FlagValues()
    ctr_flags.define_flags(fv2)
    fv2(ctr_flags.expand_flagfiles(["t", "--flagfile=again.flags"])[0])
    assert ctr_flags.config_from_flags(fv2) == cfg


def test_an_unknown_name_lists_the_shipped_flagfiles_and_a_cycle_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cfg_lib.ConfigError, match=r"--flagfile=deepfn.flags: no such file .*shipped: .*deepfm.flags"):
        ctr_flags.expand_flagfiles(["t", "--flagfile=deepfn.flags"])
    (tmp_path / "a.flags").write_text("--flagfile=missing/x.flags\n")
    with pytest.raises(cfg_lib.ConfigError, match=r"x.flags \(included by .*a.flags\): no such file"):
        ctr_flags.expand_flagfiles(["t", "--flagfile=a.flags"])
    (tmp_path / "a.flags").write_text("--flagfile=b.flags\n")
    (tmp_path / "b.flags").write_text("--flagfile=a.flags\n")
    with pytest.raises(cfg_lib.ConfigError, match="circular include"):
        ctr_flags.expand_flagfiles(["t", "--flagfile=a.flags"])
    # after --, nothing is a flag any more
    assert ctr_flags.expand_flagfiles(["t", "--", "--flagfile=nope"]) == (["t", "--", "--flagfile=nope"], [])


# ------------------------------------------------------------------ the wheel, from an empty directory

@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """`pip wheel` of a clean copy of the repository, installed without dependencies (this venv
    has them) into a folder first on PYTHONPATH: imports come from the wheel, not the checkout."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "demo", "runs", ".whl"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(base / "dist"), str(src)], check=True, timeout=300,
                   capture_output=True)
    (wheel,) = glob.glob(str(base / "dist" / "ctr_tf-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(base / "site"), wheel], check=True, timeout=300,
                   capture_output=True)
    work = base / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(base / "site")}
    return wheel, str(base / "site"), str(work), env


def _run(env, cwd, *args, ok=True):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    if ok:
        assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def test_the_wheel_holds_every_flagfile_and_what_serving_reads(wheel_env):
    wheel, _, _, _ = wheel_env
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in glob.glob(os.path.join(SHIPPED, "*.flags")):
        assert f"ctr_tf/flagfiles/{os.path.basename(path)}" in names, path
    assert "serving/docker-compose.yml" in names
    assert {"pipelines/demo.py", "serving/server.py", "ctr_tf/train.py"} <= names


def test_from_an_empty_directory_the_installed_commands_run_with_bare_flagfile_names(wheel_env):
    _, site, work, env = wheel_env
    probe = subprocess.run([sys.executable, "-c", "import ctr_tf, pipelines; print(ctr_tf.__file__, pipelines.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True)
    assert probe.stdout.split() == [os.path.join(site, "ctr_tf", "__init__.py"),
                                    os.path.join(site, "pipelines", "__init__.py")], probe.stderr
    demo = _run(env, work, "pipelines.demo", "--rows=6000", "--epochs=1", "--heldout_rows=3000")
    assert "exported SavedModel" in demo.stdout and "scored 3,000 raw rows over gRPC: AUC" in demo.stdout
    assert "demo done" in demo.stdout
    # every stage (converter, trainer, server, client) without TensorFlow's C++ start-up banner
    assert demo.stderr == "", demo.stderr[-3000:]
    assert os.path.exists(os.path.join(work, "demo", "tfrecords", "schema.json"))  # ./demo of the cwd
    # the demo trained from --flagfile=deepfm.flags; the comparison reads lr's and dcn_v2's the same way
    cmp = _run(env, work, "pipelines.compare_models", "--models=lr,dcn_v2", "--data_dir=demo/tfrecords",
               "--output_dir=cmp", "--epochs=1", "--hidden_units=16")
    table = open(os.path.join(work, "cmp", "results.md")).read()
    assert "| lr |" in table and "| dcn_v2 |" in table, cmp.stdout[-2000:]
    for recipe, model_dir in (("deepfm", os.path.join("demo", "model")),
                              ("dcn_v2", os.path.join("cmp", "runs", "dcn_v2", "seed-0"))):
        assert os.path.exists(os.path.join(work, model_dir, "export", recipe, "1", "saved_model.pb"))
        recorded = open(os.path.join(work, model_dir, "flags.txt")).read().splitlines()
        assert recorded[:2] == [f"# read --flagfile={os.path.join(site, 'ctr_tf', 'flagfiles', n)}"
                                for n in (f"{recipe}.flags", "common.flags")]
    bad = _run(env, work, "ctr_tf.train", "--flagfile=deepfn.flags", "--data_dir=x", "--model_dir=y", ok=False)
    assert bad.returncode != 0 and "shipped: " in bad.stderr and "deepfm.flags" in bad.stderr
    assert "Traceback" not in bad.stderr
