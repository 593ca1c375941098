"""The P4Runtime driver: flowtable.p4 on BMv2 or the softswitch as flow-offload hardware."""

from ndo.p4runtime.driver import P4RuntimeDriver, ReconcileReport
from ndo.p4runtime.schema import FlowSchema, Pipeline, SchemaError, load_p4info

__all__ = ["FlowSchema", "P4RuntimeDriver", "Pipeline", "ReconcileReport", "SchemaError",
           "load_p4info"]
