"""acr-helper: keeps Alibaba Cloud Container Registry pull Secrets fresh in Kubernetes."""

__version__ = "0.1.0"
