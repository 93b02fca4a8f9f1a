#!/bin/sh
# Compiles the Java example with the distribution's tools alone (no Maven Central): protoc and
# its gRPC Java plugin generate the stubs from proto/, javac compiles them with the example.
# Debian: protobuf-compiler protobuf-compiler-grpc-java-plugin libprotobuf-java libgrpc-java
# libguava-java libgeronimo-annotation-1.3-spec-java and a JDK (17 or later).
#   examples/java/build.sh [OUT_DIR]      (default: examples/java/build)
# Running it also needs grpc-java's transport (netty) on the class path.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
proto="$here/../../proto"
out=${1:-"$here/build"}
jars=/usr/share/java
rm -rf "$out/gen" "$out/classes"
mkdir -p "$out/gen" "$out/classes"
protoc -I "$proto" --java_out="$out/gen" \
  --plugin=protoc-gen-grpc-java="$(command -v grpc_java_plugin)" --grpc-java_out="$out/gen" \
  "$proto"/paraph/v1/*.proto
cp=""
for j in protobuf grpc-api grpc-stub grpc-protobuf grpc-protobuf-lite grpc-context guava \
  geronimo-annotation-1.3-spec; do
  cp="$cp:$jars/$j.jar"
done
javac -J-XX:TieredStopAtLevel=1 -nowarn -d "$out/classes" -cp "${cp#:}" \
  $(find "$out/gen" "$here/src" -name '*.java' | sort)
echo "compiled into $out/classes"
