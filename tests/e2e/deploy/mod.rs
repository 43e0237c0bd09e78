//! Shipping: the Dockerfile, docker-compose.yml, kubernetes.yaml and the
//! Instant OpenHIE package agree with each other and with what the binary
//! really does.
//!
//! No Docker engine or cluster runs here, so the files are read (the
//! Dockerfile with a small reader, the YAML with a YAML parser) and checked
//! against each other; then the real binary is started the way each of them
//! starts it (its environment, its folder layout, its project, with the
//! container paths mapped into a temp dir) and asked on the probe paths
//! they name. Credentials taken from environment variables are checked to
//! reach the job and to stay out of every log, state and answer.

mod dockerfile;
mod files;
mod manifests;
mod serve;
