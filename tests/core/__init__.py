"""The ground floor (config, db, netguard) and the serving process as a whole."""
