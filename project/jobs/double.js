// The credential arrives as state.configuration; the service removes it from
// every state it stores or returns, and masks its values in the logs.
fn(state => {
  console.log(`doubling ${state.data.number} for ${state.configuration.username}`);
  state.data.number = state.data.number * 2;
  return state;
});
