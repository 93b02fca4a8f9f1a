#!/usr/bin/env python3
"""Lists the services a paraph server describes through gRPC server reflection, the way tools
that know nothing of paraph discover it. Python's grpcio-reflection speaks
`grpc.reflection.v1alpha`, which paraph serves beside `grpc.reflection.v1`.

    python3 examples/python/list_services.py --addr 127.0.0.1:50051

Needs `python3 -m pip install grpcio grpcio-reflection`. Prints each service, then its
methods indented. No token is needed: reflection describes the API, it reads no data.
"""

import argparse
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", default="127.0.0.1:50051")
    a = ap.parse_args()
    with grpc.insecure_channel(a.addr) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        pool = DescriptorPool(db)
        for name in db.get_services():
            print(name)
            if name.startswith("grpc.reflection."):
                continue
            for m in pool.FindServiceByName(name).methods:
                print(f"  {m.name}({m.input_type.full_name}) -> {m.output_type.full_name}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(1)
