//! Checks a submitted workflow and turns it into the DAG the state machine
//! walks: jobs numbered in submission order, dependants as one flat
//! adjacency array (CSR) and an in-degree per job. Every step is O(V+E),
//! including cycle detection (Kahn's algorithm) and naming one cycle.

use std::collections::HashMap;

use crate::workflow::error::{MissingDependency, WorkflowError};
use crate::workflow::spec::{WorkflowLimits, WorkflowSpec};

/// The validated DAG of a workflow. Job `i` is `spec.jobs[i]`.
#[derive(Clone, Debug)]
pub(crate) struct Graph {
    /// Key to job number.
    pub index: HashMap<String, usize>,
    /// `dependants[dependants_start[i]..dependants_start[i + 1]]` are the
    /// jobs that depend on job `i`, in submission order.
    dependants_start: Vec<usize>,
    dependants: Vec<usize>,
    /// How many dependencies each job has.
    pub in_degree: Vec<usize>,
}

impl Graph {
    /// The jobs that depend on job `job`.
    pub fn dependants_of(&self, job: usize) -> &[usize] {
        match (
            self.dependants_start.get(job),
            self.dependants_start.get(job + 1),
        ) {
            (Some(&start), Some(&end)) => self.dependants.get(start..end).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Validates `spec` against `limits` and builds its graph.
    pub fn build(spec: &WorkflowSpec, limits: &WorkflowLimits) -> Result<Graph, WorkflowError> {
        check_bounds(spec, limits)?;
        let index = index_keys(spec)?;
        let jobs = spec.jobs.len();

        let mut in_degree = vec![0usize; jobs];
        let mut out_degree = vec![0usize; jobs];
        let mut missing = Vec::new();
        let mut self_dependent = Vec::new();
        // `seen_by[d] == i + 1` once job `i` named `d`: finds repeats in O(E).
        let mut seen_by = vec![0usize; jobs];
        // Each job's resolved dependencies, flat in submission order: the
        // CSR fill below reuses them instead of hashing every key again.
        let mut resolved = Vec::with_capacity(spec.jobs.iter().map(|j| j.depends_on.len()).sum());
        for (i, job) in spec.jobs.iter().enumerate() {
            for dependency in &job.depends_on {
                let Some(&d) = index.get(dependency) else {
                    missing.push(MissingDependency {
                        key: job.key.clone(),
                        dependency: dependency.clone(),
                    });
                    continue;
                };
                if d == i {
                    self_dependent.push(job.key.clone());
                    continue;
                }
                if seen_by[d] == i + 1 {
                    return Err(WorkflowError::DuplicateDependency {
                        key: job.key.clone(),
                        dependency: dependency.clone(),
                    });
                }
                seen_by[d] = i + 1;
                resolved.push((i, d));
                in_degree[i] += 1;
                out_degree[d] += 1;
            }
        }
        if !missing.is_empty() {
            return Err(WorkflowError::UnknownDependencies { missing });
        }
        if !self_dependent.is_empty() {
            return Err(WorkflowError::SelfDependency {
                keys: self_dependent,
            });
        }

        let mut dependants_start = Vec::with_capacity(jobs + 1);
        let mut total = 0;
        dependants_start.push(0);
        for degree in &out_degree {
            total += degree;
            dependants_start.push(total);
        }
        // Fill each job's slice front to back so dependants keep submission order.
        let mut next = dependants_start.clone();
        let mut dependants = vec![0usize; total];
        for (i, d) in resolved {
            dependants[next[d]] = i;
            next[d] += 1;
        }

        let graph = Graph {
            index,
            dependants_start,
            dependants,
            in_degree,
        };
        graph.reject_cycles(spec)?;
        Ok(graph)
    }

    /// Kahn's algorithm: peel off jobs whose dependencies are all peeled.
    /// Whatever remains lies on or behind a cycle.
    fn reject_cycles(&self, spec: &WorkflowSpec) -> Result<(), WorkflowError> {
        let mut remaining = self.in_degree.clone();
        let mut stack: Vec<usize> = (0..remaining.len())
            .filter(|&i| remaining[i] == 0)
            .collect();
        let mut peeled = 0;
        while let Some(job) = stack.pop() {
            peeled += 1;
            for &dependant in self.dependants_of(job) {
                remaining[dependant] -= 1;
                if remaining[dependant] == 0 {
                    stack.push(dependant);
                }
            }
        }
        if peeled == remaining.len() {
            return Ok(());
        }
        Err(WorkflowError::Cycle {
            keys: self.find_cycle(spec, &remaining),
        })
    }

    /// Every unpeeled job has an unpeeled dependency, so walking from one to
    /// the next must revisit a job: the walk from that job on is a cycle.
    fn find_cycle(&self, spec: &WorkflowSpec, remaining: &[usize]) -> Vec<String> {
        let Some(start) = remaining.iter().position(|&r| r > 0) else {
            return Vec::new();
        };
        let mut position_on_path: Vec<Option<usize>> = vec![None; remaining.len()];
        let mut path = Vec::new();
        let mut job = start;
        loop {
            if let Some(first) = position_on_path[job] {
                path.drain(..first);
                break;
            }
            position_on_path[job] = Some(path.len());
            path.push(job);
            let next = spec.jobs[job]
                .depends_on
                .iter()
                .filter_map(|d| self.index.get(d).copied())
                .find(|&d| remaining[d] > 0);
            match next {
                Some(d) => job = d,
                // Unreachable for a graph Kahn's algorithm could not peel.
                None => break,
            }
        }
        let mut keys: Vec<String> = path.iter().map(|&j| spec.jobs[j].key.clone()).collect();
        if let Some(smallest) = keys
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i)
        {
            keys.rotate_left(smallest);
        }
        keys
    }
}

fn check_bounds(spec: &WorkflowSpec, limits: &WorkflowLimits) -> Result<(), WorkflowError> {
    if spec.jobs.is_empty() {
        return Err(WorkflowError::Empty);
    }
    if spec.jobs.len() > limits.max_jobs {
        return Err(WorkflowError::TooManyJobs {
            len: spec.jobs.len(),
            max: limits.max_jobs,
        });
    }
    if let Some(name) = &spec.name {
        if name.len() > limits.max_name_len {
            return Err(WorkflowError::NameTooLong {
                len: name.len(),
                max: limits.max_name_len,
            });
        }
    }
    let mut edges = 0usize;
    for job in &spec.jobs {
        if job.key.is_empty() || job.key.len() > limits.max_key_len {
            return Err(WorkflowError::BadKey {
                key: job.key.chars().take(64).collect(),
                len: job.key.len(),
                max: limits.max_key_len,
            });
        }
        if job.depends_on.len() > limits.max_dependencies_per_job {
            return Err(WorkflowError::TooManyDependencies {
                key: job.key.clone(),
                len: job.depends_on.len(),
                max: limits.max_dependencies_per_job,
            });
        }
        edges += job.depends_on.len();
        if edges > limits.max_edges {
            return Err(WorkflowError::TooManyEdges {
                max: limits.max_edges,
            });
        }
        job.spec
            .validate(&limits.job)
            .map_err(|source| WorkflowError::InvalidJob {
                key: job.key.clone(),
                source,
            })?;
    }
    Ok(())
}

fn index_keys(spec: &WorkflowSpec) -> Result<HashMap<String, usize>, WorkflowError> {
    let mut index = HashMap::with_capacity(spec.jobs.len());
    let mut duplicates = Vec::new();
    for (i, job) in spec.jobs.iter().enumerate() {
        if index.insert(job.key.clone(), i).is_some() {
            duplicates.push(job.key.clone());
        }
    }
    if duplicates.is_empty() {
        return Ok(index);
    }
    duplicates.sort();
    duplicates.dedup();
    Err(WorkflowError::DuplicateKeys { keys: duplicates })
}
