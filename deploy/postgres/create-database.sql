-- The database the TaskGraphRunners share (psql -U postgres -f create-database.sql).
-- The services create and upgrade their tables themselves, under an advisory lock, so instances
-- may start together. Use a password of your own, and TLS (sslmode=require) across machines.
CREATE ROLE rackbus LOGIN PASSWORD 'change-me';
CREATE DATABASE rackbus OWNER rackbus;
