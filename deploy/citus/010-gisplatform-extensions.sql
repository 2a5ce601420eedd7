-- On every node at first start (docker-entrypoint-initdb.d), after citus itself: the
-- extensions the schema needs. Citus also propagates CREATE EXTENSION from the
-- coordinator, but a worker added later must have them available too.
create extension if not exists postgis;
create extension if not exists btree_gist;
