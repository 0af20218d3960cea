"""Every trainer flag, defined once; the one mapping from flags to ExperimentConfig; and how a
`--flagfile=` is found.

Flagfiles are found the way a user expects of recipes that ship with a package:
- on the command line, `--flagfile=PATH` is that path (relative to the current directory); a bare
  name that is no file there (`deepfm.flags`, or `deepfm`) is the flagfile of that name shipped in
  `ctr_tf/flagfiles`;
- inside a flagfile, `--flagfile=X` is X beside the file that holds it, else the shipped X, so a
  copied folder of flagfiles works wherever it is put and a user's own flagfile can start from
  `--flagfile=deepfm.flags`.
absl reads flagfiles relative to the current directory only, so the commands expand them here
first (`expand_flagfiles`) and absl parses the flat result.
"""
import dataclasses
import os
import sys

from absl import app, flags

from ctr_tf import config as cfg_lib
from ctr_tf import fs
from ctr_tf.models import options as options_lib
from ctr_tf.models import registry

FLAGS = flags.FLAGS
SHIPPED_FLAGFILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flagfiles")
_SUFFIX = ".flags"
# The flagfiles the command line of this process read, resolved, in reading order.
READ_FLAGFILES: list[str] = []


def shipped_flagfiles() -> list[str]:
    """Names (without .flags) of the flagfiles shipped with the package."""
    return sorted(n[: -len(_SUFFIX)] for n in os.listdir(SHIPPED_FLAGFILES) if n.endswith(_SUFFIX))


def shipped_flagfile(model: str) -> str:
    """Path of the shipped flagfile of a model (or of any shipped recipe name)."""
    return os.path.join(SHIPPED_FLAGFILES, model + _SUFFIX)


def resolve_flagfile(name: str, including_file: str | None = None) -> str:
    """The absolute path a `--flagfile=name` means: relative to the current directory on the
    command line, or to `including_file`'s directory inside a flagfile; failing that, a bare name
    is the shipped flagfile of that name. Raises ConfigError naming the shipped ones."""
    name = os.path.expanduser(name.strip())
    base = fs.dirname(including_file) if including_file else os.getcwd()
    candidate = name if not fs.is_local(name) else fs.join(base, name)
    if fs.isfile(candidate):
        return fs.abspath(candidate)
    if os.sep not in name and (os.altsep is None or os.altsep not in name):
        shipped = os.path.join(SHIPPED_FLAGFILES, name if name.endswith(_SUFFIX) else name + _SUFFIX)
        if os.path.isfile(shipped):
            return shipped
    where = f" (included by {including_file})" if including_file else ""
    raise cfg_lib.ConfigError(
        f"--flagfile={name}{where}: no such file {candidate}, and no shipped flagfile of that name; "
        f"shipped: {', '.join(n + _SUFFIX for n in shipped_flagfiles())}")


def _flagfile_lines(path: str, stack: list[str], read: list[str]) -> list[str]:
    if path in stack:
        raise cfg_lib.ConfigError(f"--flagfile: circular include of {path} (through {' -> '.join(stack)})")
    stack.append(path)
    read.append(path)
    out = []
    with fs.open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#") or line.startswith("//"):
                continue
            name = _directive(line)
            if name is None:
                out.append(line)
            else:
                out.extend(_flagfile_lines(resolve_flagfile(name, path), stack, read))
    stack.pop()
    return out


def _directive(arg: str) -> str | None:
    """The file name of a `--flagfile=X` / `-flagfile=X` argument, else None."""
    for prefix in ("--flagfile=", "-flagfile="):
        if arg.startswith(prefix):
            return arg[len(prefix):]
    return None


def expand_flagfiles(argv: list[str]) -> tuple[list[str], list[str]]:
    """argv with every flagfile replaced by its flags (includes expanded in place, as absl does),
    and the resolved paths of the flagfiles read. argv[0] is the program; `--` ends the flags."""
    out, read = list(argv[:1]), []
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            out += [arg, *rest]
            break
        name = _directive(arg)
        if name is None and arg in ("--flagfile", "-flagfile"):
            if not rest:
                raise cfg_lib.ConfigError("--flagfile needs a file name")
            name = rest.pop(0)
        if name is None:
            out.append(arg)
        elif name.strip():
            out.extend(_flagfile_lines(resolve_flagfile(name), [], read))
    return out, read


def flags_text(fv: flags.FlagValues = FLAGS, flagfiles=None) -> str:
    """What flags.txt holds: the flagfiles read (as comments) and every flag's value, itself a
    flagfile that reproduces the run."""
    files = READ_FLAGFILES if flagfiles is None else flagfiles
    head = "".join(f"# read --flagfile={p}\n" for p in files)
    return head + fv.flags_into_string()


def run_app(main, program: str):
    """absl's app.run, with flagfiles found as this module says; an unknown one is an error
    naming the shipped flagfiles, not a traceback."""
    def parse(argv):
        try:
            expanded, read = expand_flagfiles(argv)
        except (cfg_lib.ConfigError, OSError) as e:
            print(f"{program}: error: {e}", file=sys.stderr)
            sys.exit(2)
        READ_FLAGFILES[:] = read
        return app.parse_flags_with_usage(expanded)
    app.run(main, flags_parser=parse)


def define_flags(fv: flags.FlagValues = FLAGS):
    """Defines every trainer flag once on `fv` (absl's global FLAGS unless a test passes its own)."""
    if "model" in fv:
        return
    # The run.
    flags.DEFINE_enum("model", "deepfm", registry.names(), "Model to train.", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "Directory written by pipelines.criteo_to_tfrecords (holds schema.json).", flag_values=fv)
    flags.DEFINE_string("model_dir", None, "Checkpoints, TensorBoard events, config and exports go here.", flag_values=fv)
    flags.DEFINE_enum("mode", "train_and_evaluate", [m.value for m in cfg_lib.Mode],
                      "train_and_evaluate: train, evaluate on the test split, export; or one of the steps.", flag_values=fv)
    flags.DEFINE_integer("epochs", 1, "Training epochs.", flag_values=fv)
    flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch; 0 = one pass over the training split.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 512, "Training batch size (global, across replicas).", flag_values=fv)
    flags.DEFINE_integer("eval_batch_size", 8192, "Evaluation and prediction batch size.", flag_values=fv)
    flags.DEFINE_string("export_dir", "", "SavedModel base directory; default <model_dir>/export. "
                        "Exports land in <export_dir>/<model_name>/<version>/ as TF Serving expects.", flag_values=fv)
    flags.DEFINE_string("model_name", "", "Name of the exported model; default: --model.", flag_values=fv)
    flags.DEFINE_enum("export_table_dtype", "float32", ["float32", "float16", "int8"], "How the export stores the "
                      "embedding tables: float16, or int8 codes with each row's own scale and offset (dequantised in "
                      "the served graph's lookup); the dense layers stay float32. Also with --mode=export.",
                      flag_values=fv)
    flags.DEFINE_enum("precision", "float32", [p.value for p in cfg_lib.Precision], "Compute precision.", flag_values=fv)
    flags.DEFINE_enum("strategy", "default", [s.value for s in cfg_lib.Strategy],
                      "tf.distribute strategy; multi_worker and parameter_server read TF_CONFIG.", flag_values=fv)
    flags.DEFINE_integer("ps_shards", 0, "--strategy=parameter_server: split every embedding table into this "
                         "many shards over the parameter servers, by rows (0: one shard per ps task in "
                         "TF_CONFIG); dense layers stay whole.", flag_values=fv)
    flags.DEFINE_string("warm_start_from", "", "A model_dir whose latest weights initialise this run (weights only).", flag_values=fv)
    flags.DEFINE_string("continue_from", "", "A model_dir whose exported epoch this run continues: its weights and its "
                        "optimizer state (Adam's moments and step); tables grow where this run's vocabularies "
                        "appended ids (continuous training), a fresh table's rows for the new ids.", flag_values=fv)
    flags.DEFINE_string("eval_epochs", "", "With --mode=evaluate: the saved epochs to evaluate, START:END (END excluded).", flag_values=fv)
    flags.DEFINE_string("predict_output", "", "With --mode=predict: output file; default <model_dir>/predictions-<split>.txt.", flag_values=fv)
    flags.DEFINE_enum("eval_split", "valid", ["train", "valid", "test"], "Split evaluated after every epoch.", flag_values=fv)
    flags.DEFINE_enum("test_split", "test", ["train", "valid", "test"], "Split of the final evaluation and of predict.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Global random seed.", flag_values=fv)
    flags.DEFINE_boolean("deterministic", False, "Deterministic ops and input order: same seed, same result.", flag_values=fv)
    flags.DEFINE_integer("keep_checkpoints", 0, "Keep only the newest N epoch checkpoints; 0 keeps all.", flag_values=fv)
    flags.DEFINE_float("negative_downsampling", 1.0, "Keep each negative training row with this probability (every "
                       "positive is kept; a fresh draw each epoch, deterministic for --seed); evaluation and the "
                       "export correct the probabilities back to the full data: q = p / (p + (1 - p) / RATE).",
                       flag_values=fv)
    flags.DEFINE_enum("calibration", "none", [c.value for c in cfg_lib.CalibrationMethod],
                      "After training, fit platt (sigmoid(a z + b)) or isotonic calibration on the validation "
                      "split's predictions of the exported epoch; the export serves the calibrated probability.",
                      flag_values=fv)
    flags.DEFINE_boolean("refit_intercept", False, "After training, refit the logit's intercept on the training "
                         "split (its mean probability then equals its click rate; every order is kept); "
                         "evaluation and the export apply it, before any --calibration.", flag_values=fv)
    # The model.
    flags.DEFINE_integer("embedding_dim", 16, "Embedding size of every field.", flag_values=fv)
    flags.DEFINE_float("embedding_init_std", 1e-4, "Std of the truncated-normal embedding init (BARS: 1e-4; "
                       "PaddleRec DeepFM: 0.1/sqrt(embedding_dim)).", flag_values=fv)
    flags.DEFINE_list("hidden_units", ["400", "400", "400"], "MLP layer sizes.", flag_values=fv)
    flags.DEFINE_string("activation", "relu", "MLP activation.", flag_values=fv)
    flags.DEFINE_float("dropout", 0.0, "MLP dropout rate.", flag_values=fv)
    flags.DEFINE_boolean("batch_norm", False, "Batch normalisation in the MLP.", flag_values=fv)
    flags.DEFINE_float("embedding_l2", 0.0, "L2 on the embedding rows looked up in each batch.", flag_values=fv)
    flags.DEFINE_float("embedding_table_l2", 0.0, "lambda: lambda/2 * sum of squares over the whole of every "
                       "categorical table (FuxiCTR's convention): under Adam it pulls rows that go unseen to zero. "
                       "lazy_adam applies it sparsely; see --dense_table_l2.", flag_values=fv)
    flags.DEFINE_string("embedding_dims", "", "Sizes of their own for the categorical fields named, e.g. "
                        "C3=4,C12=4 (default=N, if given, must be --embedding_dim); models whose interactions need one "
                        "size project each to --embedding_dim, those that concatenate use them as they are.",
                        flag_values=fv)
    flags.DEFINE_string("embedding_dim_rule", "", "Every categorical field's size from its rows: log:K:MAX is "
                        "ceil(K * log2(rows)), at most MAX.", flag_values=fv)
    flags.DEFINE_string("qr_fields", "", "The quotient-remainder trick on these fields: an id indexes a quotient "
                        "table (id // m) and a remainder table (id % m); --qr_collisions is m.", flag_values=fv)
    flags.DEFINE_integer("qr_min_rows", 0, "... or on every field with at least this many rows.", flag_values=fv)
    flags.DEFINE_integer("qr_collisions", 0, "m of the quotient-remainder trick: ids per quotient row.", flag_values=fv)
    flags.DEFINE_enum("qr_combiner", "product", ["product", "sum", "concat"], "How a QR field's two rows combine: "
                      "their product (the paper's default), sum, or concatenation.", flag_values=fv)
    flags.DEFINE_float("dense_l2", 0.0, "L2 on the MLP kernels (and xDeepFM's CIN).", flag_values=fv)
    define_model_option_flags(fv)
    # The optimisation.
    flags.DEFINE_enum("optimizer", "lazy_adam", [o.value for o in cfg_lib.Optimizer],
                      "lazy_adam, adagrad, sgd and ftrl update embedding rows sparsely; adam updates whole tables.", flag_values=fv)
    flags.DEFINE_float("learning_rate", 1e-3, "Base learning rate.", flag_values=fv)
    flags.DEFINE_float("adam_epsilon", 1e-8, "Adam epsilon (PaddlePaddle's default 1e-8).", flag_values=fv)
    flags.DEFINE_boolean("dense_table_l2", False, "Apply --embedding_table_l2 as a loss term, a gradient at every row "
                         "every step, even with lazy_adam (which otherwise applies it sparsely, each row catching up on "
                         "the steps it missed when next looked up).", flag_values=fv)
    flags.DEFINE_enum("lr_schedule", "constant", [s.value for s in cfg_lib.LRSchedule],
                      "constant; plateau: x lr_plateau_factor when --early_stopping_metric stalls; "
                      "warmup_decay: linear warmup, then exponential decay.", flag_values=fv)
    flags.DEFINE_float("lr_plateau_factor", 0.1, "Factor of the plateau schedule.", flag_values=fv)
    flags.DEFINE_integer("lr_plateau_patience", 1, "Epochs without a gain in --early_stopping_metric before the "
                         "plateau cut.", flag_values=fv)
    flags.DEFINE_integer("warmup_steps", 0, "Warmup steps of warmup_decay.", flag_values=fv)
    flags.DEFINE_integer("decay_steps", 0, "Steps per decay_rate factor of warmup_decay.", flag_values=fv)
    flags.DEFINE_float("decay_rate", 0.1, "Decay factor per decay_steps.", flag_values=fv)
    flags.DEFINE_integer("early_stopping_patience", 0, "Stop after N epochs without a gain in "
                         "--early_stopping_metric and restore the best epoch for export; 0: off.", flag_values=fv)
    flags.DEFINE_enum("early_stopping_metric", "auc", [m.value for m in cfg_lib.StoppingMetric],
                      "The validation metric that early stopping, the plateau schedule and the best (exported) "
                      "epoch follow: auc (higher is better), logloss or ne (lower is better).", flag_values=fv)
    flags.DEFINE_integer("patience_min_steps", 0, "Early stopping's and the plateau schedule's patience counts "
                         "epochs of at least N training steps: where an epoch is shorter, each one of patience spans "
                         "ceil(N / steps an epoch) epochs (on small data a few steps are no evidence of a stall); "
                         "0: an epoch each.", flag_values=fv)
    flags.DEFINE_float("clipnorm", 0.0, "Clip gradients by global norm; 0: off.", flag_values=fv)
    flags.DEFINE_integer("log_every_n_steps", 100, "TensorBoard train scalars every N steps.", flag_values=fv)


def define_model_option_flags(fv: flags.FlagValues) -> None:
    """One flag per model option, generated from the registry (ctr_tf.models.registry): each is
    listed by `--helpfull` under the model(s) it belongs to."""
    kinds = {"bool": flags.DEFINE_boolean, "int": flags.DEFINE_integer, "float": flags.DEFINE_float,
             "str": flags.DEFINE_string}
    for name, (field, owners) in registry.option_fields().items():
        default = field.default
        kind = options_lib.kind_of(default)
        help_text = field.metadata.get("help", "") or name
        module = _options_module(owners[0])
        if kind == "enum":
            flags.DEFINE_enum(name, default.value, [e.value for e in type(default)], help_text, flag_values=fv,
                              module_name=module)
        elif kind == "list":
            flags.DEFINE_list(name, [str(v) for v in default], help_text, flag_values=fv, module_name=module)
        else:
            kinds[kind](name, default, help_text, flag_values=fv, module_name=module)
        for other in owners[1:]:
            fv.register_flag_by_module(_options_module(other), fv[name])


def _options_module(model: str) -> str:
    """The heading --helpfull lists a model's options under."""
    return f"--model={model} options ({registry.entry(model).module})"


def _model_config(fv: flags.FlagValues) -> cfg_lib.ModelConfig:
    """ModelConfig from the flags of the same names: the shared options, and the options of
    --model's own class. A flag of another model's options set away from its default is named in
    a warning (it changes nothing for this model)."""
    shared = {}
    for name in cfg_lib.SHARED_MODEL_FIELDS:
        flag = "model" if name == "name" else name
        value = fv[flag].value
        if name == "hidden_units":
            try:
                value = tuple(int(u) for u in value)
            except ValueError:
                raise cfg_lib.ConfigError(f"--{flag}={','.join(value)!r}: expected integers") from None
        shared[name] = value
    model = shared["name"]
    own = registry.options_class(model)
    own_names = {f.name for f in dataclasses.fields(own)}
    for name, (field, owners) in registry.option_fields().items():
        if name not in own_names and fv[name].present and fv[name].value != fv[name].default:
            print(f"warning: --{name}={fv[name].serialize().split('=', 1)[-1]} is an option of "
                  f"{', '.join('--model=' + o for o in owners)}, not of --model={model}: it is ignored",
                  file=sys.stderr, flush=True)
    options = own.from_values({n: fv[n].value for n in own_names})
    return cfg_lib.ModelConfig(options=options, **shared)


def config_from_flags(fv: flags.FlagValues = FLAGS) -> cfg_lib.ExperimentConfig:
    """Parsed flags -> a validated ExperimentConfig; a bad value raises ConfigError naming the flag."""
    for flag in ("data_dir", "model_dir"):
        if not fv[flag].value:
            raise cfg_lib.ConfigError(f"--{flag} is required")
    return cfg_lib.ExperimentConfig(
        data=cfg_lib.DataConfig(data_dir=fv.data_dir, eval_split=fv.eval_split, test_split=fv.test_split),
        model=_model_config(fv),
        train=cfg_lib.TrainConfig(
            model_dir=fv.model_dir, mode=cfg_lib.Mode(fv.mode), epochs=fv.epochs,
            batch_size=fv.batch_size, eval_batch_size=fv.eval_batch_size,
            steps_per_epoch=fv.steps_per_epoch, learning_rate=fv.learning_rate,
            optimizer=cfg_lib.Optimizer(fv.optimizer), adam_epsilon=fv.adam_epsilon,
            dense_table_l2=fv.dense_table_l2,
            lr_schedule=cfg_lib.LRSchedule(fv.lr_schedule), lr_plateau_factor=fv.lr_plateau_factor,
            lr_plateau_patience=fv.lr_plateau_patience, warmup_steps=fv.warmup_steps,
            decay_steps=fv.decay_steps, decay_rate=fv.decay_rate,
            early_stopping_patience=fv.early_stopping_patience,
            early_stopping_metric=cfg_lib.StoppingMetric(fv.early_stopping_metric),
            patience_min_steps=fv.patience_min_steps, clipnorm=fv.clipnorm,
            log_every_n_steps=fv.log_every_n_steps, export_dir=fv.export_dir,
            model_name=fv.model_name or fv.model, precision=cfg_lib.Precision(fv.precision),
            strategy=cfg_lib.Strategy(fv.strategy), ps_shards=fv.ps_shards, warm_start_from=fv.warm_start_from,
            continue_from=fv.continue_from,
            eval_epochs=fv.eval_epochs, predict_output=fv.predict_output, seed=fv.seed,
            deterministic=fv.deterministic, keep_checkpoints=fv.keep_checkpoints,
            negative_downsampling=fv.negative_downsampling,
            calibration=cfg_lib.CalibrationMethod(fv.calibration), refit_intercept=fv.refit_intercept,
            export_table_dtype=fv.export_table_dtype))
