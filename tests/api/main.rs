//! Integration tests: one binary, a real server per test. Every test runs on SQLite and,
//! when COUNTERSIGN_TEST_DATABASE_URL is set, on PostgreSQL.

mod access;
mod accounts;
mod audit;
mod backup;
mod basics;
mod browser;
mod budgets;
mod changes;
mod cli;
mod concurrency;
mod config;
mod crash;
mod effects;
mod effects_preview;
mod execution;
mod expiry;
mod guards;
mod headers;
mod helpers;
mod inventory;
mod limits;
mod mail;
mod migrations;
mod notices;
mod plans;
mod queue;
mod signoffs;
mod smtp;
mod states;
mod teams;
mod truth;
mod two_servers;
mod web;
mod webhook;
mod webhook_undo;
