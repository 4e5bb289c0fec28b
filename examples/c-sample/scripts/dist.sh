#!/bin/sh
# dist.sh VERSION - build the library and pack it with its headers into
# build/textbuf-VERSION.tar.gz
set -eu
version=${1:?usage: dist.sh VERSION}
out=build/textbuf-$version
make -s all
rm -rf "$out"
mkdir -p "$out/include" "$out/lib"
for h in $(ls src/*.h); do
    cp "$h" "$out/include/"
done
cp build/libtextbuf.a "$out/lib/"
cd build
tar -czf "textbuf-$version.tar.gz" "textbuf-$version"
echo "wrote $out.tar.gz"
