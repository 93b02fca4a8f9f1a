"""Generates the Python gRPC stubs of paraph's API from the repository's proto/ directory.

The stubs are generated at run time with grpcio-tools into a temporary directory (nothing
generated is committed); `load()` returns the generated modules. In your own project you would
generate them once, at build time:

    python3 -m grpc_tools.protoc -I proto --python_out=gen --grpc_python_out=gen proto/paraph/v1/*.proto
"""

import atexit
import glob
import importlib
import os
import shutil
import sys
import tempfile
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))

MODULES = ["common", "admin", "circuit", "document", "signature", "delegation", "audit"]


def load(proto_dir=DEFAULT_PROTO):
    """Compiles proto_dir/paraph/v1/*.proto and imports the `*_pb2` and `*_pb2_grpc` modules."""
    from grpc_tools import protoc  # imported here: a clear error when grpcio-tools is missing

    out = tempfile.mkdtemp(prefix="paraph-stubs-")
    atexit.register(shutil.rmtree, out, True)
    files = sorted(glob.glob(os.path.join(proto_dir, "paraph", "v1", "*.proto")))
    if not files:
        raise SystemExit(f"no .proto files under {proto_dir}/paraph/v1")
    # grpcio-tools ships the well-known types; paraph's protos import only each other.
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["protoc", f"-I{proto_dir}", f"-I{well_known}",
            f"--python_out={out}", f"--grpc_python_out={out}", *files]
    if protoc.main(args) != 0:
        raise SystemExit("grpc_tools.protoc failed on " + proto_dir)
    sys.path.insert(0, out)
    ns = {}
    for name in MODULES:
        ns[name] = importlib.import_module(f"paraph.v1.{name}_pb2")
        ns[name + "_grpc"] = importlib.import_module(f"paraph.v1.{name}_pb2_grpc")
    return SimpleNamespace(**ns)
