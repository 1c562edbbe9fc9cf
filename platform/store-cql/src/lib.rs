//! The storage backend for clusters: ScyllaDB (or Apache Cassandra) over CQL.
