"""Local alarms: rules from the site configuration, evaluated on every poll."""
