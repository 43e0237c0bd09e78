// Cron runs start from the job's last successful final state.
fn(state => {
  state.beats = (state.beats || 0) + 1;
  console.log(`heartbeat #${state.beats}`);
  return state;
});
