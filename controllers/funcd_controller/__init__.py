"""funcd's Kubernetes controller: render Functions into manifests (``render``)."""
