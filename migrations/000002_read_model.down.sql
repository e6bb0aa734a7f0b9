DROP TABLE IF EXISTS switches;
DROP TABLE IF EXISTS dead_letters;
DROP TABLE IF EXISTS user_entitlements;
DROP TABLE IF EXISTS customer_entitlements;
