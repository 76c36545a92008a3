"""hiro-monitor: research imaging schedule monitor."""
