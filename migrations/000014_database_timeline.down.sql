DROP TABLE database_timeline;
