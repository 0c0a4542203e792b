"""Static checks of what ships the service: image, manifests, alert rules, dashboards."""
