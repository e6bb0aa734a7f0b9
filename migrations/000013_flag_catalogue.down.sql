DROP TABLE flag_catalogue;
DROP FUNCTION tollgate_notify_catalogue();
