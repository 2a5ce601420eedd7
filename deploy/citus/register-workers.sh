#!/bin/sh
# One-shot, run by the `citus-init` service of the `citus` profile against the coordinator
# once every node is healthy: tells the coordinator where it and its workers are, and sets
# the shard count used when migration 0010 distributes the version tables.
# Idempotent: citus_add_node returns the existing node id for a node already added.
set -eu
: "${PGHOST:?coordinator host}" "${CITUS_WORKERS:?space-separated worker hosts}"
SHARDS="${CITUS_SHARD_COUNT:-32}"
psql -v ON_ERROR_STOP=1 -qAt <<SQL
select citus_set_coordinator_host('${PGHOST}', 5432);
alter system set citus.shard_count = ${SHARDS};
-- shards replicate through the workers' own standbys, not Citus statement replication
alter system set citus.shard_replication_factor = 1;
select pg_reload_conf();
SQL
for w in ${CITUS_WORKERS}; do
  psql -v ON_ERROR_STOP=1 -qAt -c "select citus_add_node('${w}', 5432)"
done
psql -v ON_ERROR_STOP=1 -qAt -c "select nodename, nodeport, noderole from pg_dist_node order by nodeid"
