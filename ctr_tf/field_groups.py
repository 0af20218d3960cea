"""Which group (user, item or context) each raw field of a format belongs to: the schema metadata
that FLEN's field-wise interaction reads. The grouping of Avazu's columns is PaddleRec's
(models/rank/flen); the avazu_slot format names its slots after their group."""
from __future__ import annotations

AVAZU_GROUPS = {**{c: "user" for c in ("C1", "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
                                       "device_id", "device_ip", "device_model", "device_type")},
                **{c: "item" for c in ("app_id", "app_domain", "app_category")},
                **{c: "context" for c in ("banner_pos", "site_id", "site_domain", "site_category",
                                          "device_conn_type", "hour")}}


def feature_group(fmt: str, name: str) -> str | None:
    """The group of raw field `name` in format `fmt`; None where the format has no groups (Criteo)."""
    if fmt == "avazu_csv":
        return AVAZU_GROUPS.get(name)
    if fmt == "avazu_slot":
        return {"user": "user", "item": "item", "contex": "context"}[name.split("_")[0]]
    return None
