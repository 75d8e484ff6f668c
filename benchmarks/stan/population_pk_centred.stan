// Population PK benchmark, centred: the model of population_pk.stan (one compartment with
// first-order absorption, one oral dose per patient at t = 0, log-normal between-subject
// variability on ka, CL, V, additive residual error, the same priors and ODE solve) with the
// random effects sampled directly, eta[i, k] ~ normal(0, omega_k), instead of the standard
// normals behind them. The same posterior in other coordinates; with data-rich patients the
// centred form is often the better geometry, so benchmarks/population.py --solver rk45-centred
// runs it against bayesbio's centred model to check that Stan is not held back by its
// parameterisation.
functions {
  vector pk_rhs(real t, vector y, real ka, real cl, real v) {
    return [-ka * y[1], ka * y[1] - cl / v * y[2]]';
  }
}
data {
  int<lower=1> P;                      // patients
  int<lower=1> N;                      // observations, patient by patient
  array[P] int<lower=1> start;         // first observation of each patient
  array[P] int<lower=1> len;           // number of observations of each patient
  array[N] real<lower=0> time;         // h, strictly positive and increasing within a patient
  vector[N] conc;                      // mg/L
  vector<lower=0>[P] dose;             // mg, into the depot at t = 0
  real<lower=0> rtol;
  real<lower=0> atol;
  int<lower=1> max_num_steps;
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
  for (i in 1 : P) {
    array[len[i]] vector[2] y = ode_rk45_tol(pk_rhs, [dose[i], 0]', 0.0,
                                             segment(time, start[i], len[i]), rtol, atol,
                                             max_num_steps, ka[i], cl[i], v[i]);
    for (j in 1 : len[i]) {
      conc[start[i] + j - 1] ~ normal(y[j][2] / v[i], sigma);
    }
  }
}
