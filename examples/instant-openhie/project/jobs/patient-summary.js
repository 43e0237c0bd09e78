// Summarises a FHIR Patient receipt. `state.configuration` is the `openhim`
// credential, its username and password taken from the environment; a real
// job would send the summary on with them (language-http's `post`). The
// credential itself is never copied into the state that is kept.
fn(state => {
  const patient = state.data;
  const name = (patient.name || [])[0] || {};
  const cfg = state.configuration;
  state.data = {
    id: patient.id,
    name: (name.given || []).concat(name.family ? [name.family] : []).join(' '),
    birthDate: patient.birthDate,
    forward_to: cfg.url,
    authenticated: typeof cfg.password === 'string' && cfg.password.length > 0,
  };
  return state;
});
