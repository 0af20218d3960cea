"""The converter's flags for how text is encoded, defined once: `criteo_to_tfrecords` and
`continuous` (which converts every span) both take them."""
from absl import flags

from ctr_tf.data import convert, formats


def define_encoding_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    if "categorical_encoding" in fv:
        return
    flags.DEFINE_enum("input_format", "auto", ("auto",) + formats.FORMATS, "Input format; auto detects it.", flag_values=fv)
    flags.DEFINE_enum("categorical_encoding", "vocab", convert.ENCODINGS,
                      "vocab: vocabulary from the training split; hash: hash buckets per field.", flag_values=fv)
    flags.DEFINE_string("min_count", "2", "Vocabulary mode: values seen fewer times in train map to the field's OOV "
                        "id: one threshold for every field, or per field with a default for the rest, e.g. "
                        "C3=10,C12=10,default=2 (recorded per field in schema.json).", flag_values=fv)
    flags.DEFINE_string("hash_buckets", "100000", "Hash mode: buckets per field (plus one id for missing): one size "
                        "for every field, or per field with a default for the rest, e.g. "
                        "C3=10000000,C12=8000000,default=100000 (MLPerf's per-feature cap on Criteo 1TB).",
                        flag_values=fv)
    flags.DEFINE_enum("dense_transform", "auto", convert.DENSE_TRANSFORMS,
                      "log1p, bucketize (BARS floor(ln(x)^2) categorical buckets), minmax (PaddleRec constants), "
                      "identity; auto = identity for paddlerec_slot (already scaled), else log1p.", flag_values=fv)
    flags.DEFINE_boolean("missing_indicator", False, "Add a 0/1 missing indicator feature per dense input.",
                         flag_values=fv)
    flags.DEFINE_integer("block_rows", 4096, "Rows packed into one TFRecord record.", flag_values=fv)
    flags.DEFINE_integer("rows_per_shard", 1_000_000, "Rows per TFRecord shard.", flag_values=fv)
    flags.DEFINE_enum("compression", "none", ["none", "gzip"], "TFRecord compression.", flag_values=fv)
    flags.DEFINE_float("max_reject_rate", 1.0, "Abort when more than this fraction of rows is rejected.",
                       flag_values=fv)
    flags.DEFINE_integer("threads", 2, "Parsing threads.", flag_values=fv)
    flags.DEFINE_boolean("progress", True, "Show a progress bar on stderr.", flag_values=fv)


def encoding_config(fv: flags.FlagValues = flags.FLAGS, **given) -> convert.ConvertConfig:
    """A ConvertConfig from the encoding flags and `given` (inputs, output_dir, split, seed, ...)."""
    hash_default, hash_fields = convert.parse_hash_buckets(fv.hash_buckets)
    count_default, count_fields = convert.parse_min_count(fv.min_count)
    return convert.ConvertConfig(**{
        "input_format": fv.input_format, "categorical_encoding": fv.categorical_encoding, "min_count": count_default, "field_min_counts": count_fields,
        "hash_buckets": hash_default, "field_hash_buckets": hash_fields, "dense_transform": fv.dense_transform,
        "missing_indicator": fv.missing_indicator, "block_rows": fv.block_rows, "rows_per_shard": fv.rows_per_shard,
        "compression": "GZIP" if fv.compression == "gzip" else "", "max_reject_rate": fv.max_reject_rate,
        "threads": fv.threads, "progress": fv.progress, **given})
