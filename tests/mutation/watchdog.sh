#!/bin/bash
# End a mutmut worker that has run a mutant's tests for over 180 s of wall time (a hang that
# sleeps uses no CPU, so mutmut's CPU-time limit never fires). Logged to watchdog.log.
while true; do
  for pid in $(pgrep -f "mutmut run"); do
    pp=$(ps -o ppid= -p $pid 2>/dev/null | tr -d ' '); [ -z "$pp" ] && continue
    gp=$(ps -o ppid= -p $pp 2>/dev/null | tr -d ' '); [ -z "$gp" ] && continue
    if grep -q "mutmut" /proc/$pp/cmdline 2>/dev/null && grep -q "mutmut" /proc/$gp/cmdline 2>/dev/null; then
      et=$(ps -o etimes= -p $pid | tr -d ' ')
      if [ -n "$et" ] && [ "$et" -gt 180 ]; then kill -9 $pid && echo "$(date +%T) killed worker $pid after ${et}s" >> "${MUTMUT_WATCHDOG_LOG:-mutants/watchdog.log}"; fi
    fi
  done
  sleep 10
done
