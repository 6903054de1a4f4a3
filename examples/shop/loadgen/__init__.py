"""Load generation for the demo and the benchmark: place orders over HTTP, observe them
settle in the order service's database, summarise."""
