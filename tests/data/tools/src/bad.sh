#!/bin/sh
dir=$1
files=$(ls $dir)
for f in $files; do
    cat $f | grep foo
done
cd $dir
echo "done: `date`"
