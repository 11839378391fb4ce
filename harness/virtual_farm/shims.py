"""The Android-only commands toybox lacks, as small mksh scripts in the phone's /system/bin.

- getprop / setprop: the phone's properties, one KEY=VALUE line each in /dev/__properties__/props (sorted, so
  `getprop` lists them in order as Android's does: `[key]: [value]`).
- dumpsys / cmd battery: the report is a file the phone's model writes (/dev/__services__/battery);
  `unplug` and `reset` leave a request in /dev/__control__ and wait until the model has taken it.
- taskset: device cores -> this host's CPUs (device core i runs on host CPU HOST[i % n]), then toybox's taskset;
  the device mask is exported for the power model's CPU accounting.
- ps: with no field list, Android's columns (USER PID PPID VSZ RSS WCHAN ADDR S NAME).
"""

from __future__ import annotations

from collections.abc import Sequence

DEVICE_CORES_ENV = "ANDROID_DEVICE_CORES"  # the taskset mask a program was started with, in hex

GETPROP = """#!/system/bin/sh
f=/dev/__properties__/props
if [ $# -eq 0 ]; then
  while IFS= read -r l; do print -r -- "[${l%%=*}]: [${l#*=}]"; done <$f
  exit 0
fi
while IFS= read -r l; do
  if [ "${l%%=*}" = "$1" ]; then print -r -- "${l#*=}"; exit 0; fi
done <$f
print -r -- "$2"
"""

SETPROP = """#!/system/bin/sh
f=/dev/__properties__/props
if [ $# -ne 2 ]; then print -u2 "usage: setprop NAME VALUE"; exit 1; fi
case $1 in
ro.*)
  while IFS= read -r l; do
    if [ "${l%%=*}" = "$1" ]; then
      print -u2 "Failed to set property '$1' to '$2'."
      print -u2 "See dmesg for error reason."
      exit 1
    fi
  done <$f ;;
esac
{ while IFS= read -r l; do [ "${l%%=*}" = "$1" ] || print -r -- "$l"; done <$f; print -r -- "$1=$2"; } |
  LC_ALL=C sort >$f.new && mv $f.new $f
"""

_BATTERY = """battery() {
  tool=$1; shift
  case "$*" in
  "") cat /dev/__services__/battery ;;
  unplug|reset)
    print -r -- "$1" >/dev/__control__/battery.new && mv /dev/__control__/battery.new /dev/__control__/battery
    i=0
    while [ -e /dev/__control__/battery ] && [ $i -lt 200 ]; do sleep 0.025; i=$((i+1)); done ;;
  *) print -u2 "$tool: battery: unknown command '$*' (the virtual device supports unplug, reset)"; return 255 ;;
  esac
}
"""

DUMPSYS = f"""#!/system/bin/sh
{_BATTERY}case $1 in
""|-l) print "Currently running services:"; print "  battery" ;;
battery) shift; battery dumpsys "$@" ;;
*) print -u2 "Can't find service: $1" ;;
esac
"""

CMD = f"""#!/system/bin/sh
{_BATTERY}case $1 in
"") print -u2 "cmd: No service specified; use -l to list all running services."; exit 20 ;;
-l) print "Currently running services:"; print "  battery" ;;
battery) shift; battery cmd "$@" ;;
*) print -u2 "cmd: Can't find service: $1"; exit 20 ;;
esac
"""

# A program started through an interpreter (the runner zipapp: #!/usr/bin/env python3) is named after its
# script in NAME, as a native benchmark_model is after its file.
PS = """#!/system/bin/sh
case " $* " in
*" -o "*|*" -O "*) exec toybox ps "$@" ;;
esac
# The listing is taken before it is rewritten, so the rewriting subshell is not in it.
listing=$(toybox ps -o USER,PID,PPID,VSZ,RSS,WCHAN,ADDR,S,NAME "$@") || exit
print -r -- "$listing" | while IFS= read -r line; do
  set -- $line
  if [ "$9" = python3 ] && [ -r /proc/$2/cmdline ]; then
    script= n=0
    while IFS= read -r -d "" arg; do n=$((n+1)); if [ $n -eq 2 ]; then script=$arg; break; fi; done </proc/$2/cmdline
    case $script in -*|"") ;; *) line="${line%%python3*}${script##*/}" ;; esac
  fi
  print -r -- "$line"
done
"""


def taskset(core_count: int, host_cpus: Sequence[int]) -> str:
    hosts = " ".join(str(c) for c in host_cpus)
    return f"""#!/system/bin/sh
case $1 in -p|--help|"") exec toybox taskset "$@" ;; esac
a=
if [ "$1" = -a ]; then a=-a; shift; fi
if [ $# -lt 2 ]; then exec toybox taskset $a "$@"; fi
case $1 in *[!0-9a-fA-Fx]*) exec toybox taskset $a "$@" ;; esac
set -A hosts {hosts}
typeset -i mask=16#${{1#0x}} host=0 i=0
while [ $i -lt {core_count} ]; do
  if (( (mask >> i) & 1 )); then (( host |= 1 << hosts[i % {len(host_cpus)}] )); fi
  (( i += 1 ))
done
shift
export {DEVICE_CORES_ENV}=$(printf %x $((mask & {(1 << core_count) - 1})))
exec toybox taskset $a $(printf %x $host) "$@"
"""


def shims(core_count: int, host_cpus: Sequence[int]) -> dict[str, str]:
    return {
        "getprop": GETPROP,
        "setprop": SETPROP,
        "dumpsys": DUMPSYS,
        "cmd": CMD,
        "ps": PS,
        "taskset": taskset(core_count, host_cpus),
    }
