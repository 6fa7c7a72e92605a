"""What the chip does per hardware step: action counts (synaptic events, neuron updates, messages), the neuron work
rules, and the routes and hops of messages on the mesh."""
