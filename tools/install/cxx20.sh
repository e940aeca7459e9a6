#!/usr/bin/env bash
# Compiler wrapper for building mmcv 2.1.0 against torch >= 2.14: mmcv's setup.py hard-codes
# -std=c++14/-std=c++17, but torch's headers need C++20. Rewrites that one flag, drops debug info (-g0
# halves the build time), and leaves every other argument as given.
args=()
for a in "$@"; do
  case "$a" in
    -std=c++14|-std=c++17) args+=("-std=c++20") ;;
    *) args+=("$a") ;;
  esac
done
exec "${VSSM_REAL_CXX:-g++}" "${args[@]}" -g0
