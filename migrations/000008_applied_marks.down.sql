DROP TABLE applied_marks;
