// Population PK benchmark, closed form, centred: the model of population_pk_analytic.stan (one
// compartment with first-order absorption, one oral dose per patient at t = 0, log-normal
// between-subject variability on ka, CL, V, additive residual error, the same priors and textbook
// formula) with the random effects sampled directly, eta[i, k] ~ normal(0, omega_k), instead of
// the standard normals behind them: the same posterior in other coordinates.
// benchmarks/population.py --solver analytic-centred runs it against bayesbio's centred model.
data {
  int<lower=1> P;                      // patients
  int<lower=1> N;                      // observations, patient by patient
  array[P] int<lower=1> start;         // first observation of each patient
  array[P] int<lower=1> len;           // number of observations of each patient
  array[N] real<lower=0> time;         // h
  vector[N] conc;                      // mg/L
  vector<lower=0>[P] dose;             // mg, into the depot at t = 0
}
transformed data {
  array[N] int<lower=1, upper=P> patient;  // patient of each observation
  vector[N] t = to_vector(time);
  for (i in 1 : P) {
    for (j in 1 : len[i]) {
      patient[start[i] + j - 1] = i;
    }
  }
}
parameters {
  real<lower=0> ka_pop;
  real<lower=0> cl_pop;
  real<lower=0> v_pop;
  real<lower=0> omega_ka;
  real<lower=0> omega_cl;
  real<lower=0> omega_v;
  real<lower=0> sigma;
  matrix[P, 3] eta;
}
transformed parameters {
  vector[P] ka = ka_pop * exp(eta[ : , 1]);
  vector[P] cl = cl_pop * exp(eta[ : , 2]);
  vector[P] v = v_pop * exp(eta[ : , 3]);
}
model {
  ka_pop ~ lognormal(log(1.0), 1.0);
  cl_pop ~ lognormal(log(4.0), 1.0);
  v_pop ~ lognormal(log(40.0), 1.0);
  omega_ka ~ normal(0, 1);
  omega_cl ~ normal(0, 1);
  omega_v ~ normal(0, 1);
  sigma ~ normal(0, 2);
  eta[ : , 1] ~ normal(0, omega_ka);
  eta[ : , 2] ~ normal(0, omega_cl);
  eta[ : , 3] ~ normal(0, omega_v);
  {
    vector[P] k = cl ./ v;
    vector[N] ka_n = ka[patient];
    vector[N] k_n = k[patient];
    vector[N] mu = (dose[patient] ./ v[patient]) .* ka_n ./ (ka_n - k_n)
                   .* (exp(-k_n .* t) - exp(-ka_n .* t));
    conc ~ normal(mu, sigma);
  }
}
