DROP TABLE calendar_feed_tokens;
DROP TABLE freeze_exceptions;
DROP TABLE lockdown_pauses;
DROP TABLE calendar_proposals;
DROP TABLE lockdowns;
DROP TABLE freezes;
