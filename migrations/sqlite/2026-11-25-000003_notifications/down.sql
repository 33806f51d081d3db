DROP TABLE customer_notices;
DROP TABLE contacts;
DROP TABLE notification_prefs;
DROP TABLE outbox;
