#!/usr/bin/env bash
# ctest demo_smoke: runs the README's demo command for a few seconds against
# the binaries of this build and checks that events of all 17 types visibly
# flowed through pod -> bridge -> example consumer, each line carrying its
# logging context, and that everything stopped cleanly.
#   demo_smoke.sh SOURCE_DIR BUILD_DIR
set -u
src=$1 build=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
DF_BUILD_DIR="$build" timeout 60 "$src/scripts/demo.sh" --rate 40 --duration 5 >"$out" 2>&1
rc=$?
fail=0
if [ $rc -ne 0 ]; then echo "demo exited with $rc"; fail=1; fi
for t in MESSAGESENT SHAREDPOST INSTANTMESSAGECREATED ROOMCREATED ROOMUPDATED ROOMDEACTIVATED \
         ROOMREACTIVATED USERREQUESTEDTOJOINROOM USERJOINEDROOM USERLEFTROOM \
         ROOMMEMBERPROMOTEDTOOWNER ROOMMEMBERDEMOTEDFROMOWNER CONNECTIONREQUESTED \
         CONNECTIONACCEPTED MESSAGESUPPRESSED SYMPHONYELEMENTSACTION GENERICSYSTEMEVENT; do
  if ! grep -Eq "worker-[0-9]+/[^ /]+/printer - $t " "$out"; then
    echo "no $t line with a worker/event/listener context"; fail=1
  fi
done
# the Python example (consumers/python/examples/logging_filter.py): the BDK's log format and context
if ! grep -Eq " - bot - INFO - Task-[0-9]+/[^ /]+/[0-9]+ - message " "$out"; then
  echo "no MESSAGESENT line of the Python example with its Task/event/listener context"; fail=1
fi
# the Python BDK's getting-started bot (examples/reply_listener.py) answered through the
# bridge's command channel: the pod stored its replies, and they came back on the datafeed
# as the bot's own MESSAGESENT (initiated by demo-bot)
posted=$(sed -nE 's/^demo: the bot posted ([0-9]+) replies.*/\1/p' "$out" | tail -n 1)
if [ -z "$posted" ] || [ "$posted" -lt 1 ]; then
  echo "the reply bot posted no reply through the command channel (${posted:-no count line})"; fail=1
fi
grep -Eq "main - stopped: .*malformed 0" "$out" || { echo "the consumer did not stop cleanly"; fail=1; }
grep -q "demo: stopped" "$out" || { echo "the demo did not stop cleanly"; fail=1; }
if [ $fail -ne 0 ]; then echo "----- demo output -----"; tail -n 60 "$out"; echo "1 failed"; exit 1; fi
echo "demo_smoke: $(grep -Ec 'worker-[0-9]+/' "$out") event lines of the C example, all 17 types;" \
     "$(grep -Ec ' - bot - INFO - Task-' "$out") of the Python example; $posted replies posted through the bridge"
exit 0
