"""HJ 212-2017: edge-agent as the site's data logger (数采仪) for the environmental bureau."""
