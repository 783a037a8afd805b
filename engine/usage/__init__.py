"""What clients spend and use: budgets checked before a call and charged after it, and usage
counters per client, route, provider, model and UTC day, all in the state backend."""
