-- One database per Puchi service (docs/architecture.md). The postgres image runs
-- this once, on the first start with an empty data volume; after changing it,
-- `docker compose down -v` (drops all data) or create the database by hand.
-- Each service additionally keeps its tables in a schema named after itself.
CREATE DATABASE puchi_user;
CREATE DATABASE puchi_lesson;
CREATE DATABASE puchi_progress;
CREATE DATABASE puchi_notification;
CREATE DATABASE puchi_media;
CREATE DATABASE puchi_quiz;
CREATE DATABASE puchi_vocabulary;
CREATE DATABASE puchi_analytics;
