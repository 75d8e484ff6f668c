// Population PK benchmark: the bundled bayesbio model `theophylline` (models/theophylline.py)
// on simulated patients. One compartment with first-order absorption, one oral dose per
// patient at t = 0, log-normal between-subject variability on ka, CL, V (non-centred),
// additive residual error; the same priors as the bayesbio model. Each patient's ODE is solved
// with ode_rk45_tol at the tolerances passed as data (the bayesbio side uses its fused RK45
// with forward sensitivities at the same rtol/atol).
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
  matrix[P, 3] eta_z;
}
transformed parameters {
  vector[P] ka = ka_pop * exp(omega_ka * eta_z[ : , 1]);
  vector[P] cl = cl_pop * exp(omega_cl * eta_z[ : , 2]);
  vector[P] v = v_pop * exp(omega_v * eta_z[ : , 3]);
}
model {
  ka_pop ~ lognormal(log(1.0), 1.0);
  cl_pop ~ lognormal(log(4.0), 1.0);
  v_pop ~ lognormal(log(40.0), 1.0);
  omega_ka ~ normal(0, 1);
  omega_cl ~ normal(0, 1);
  omega_v ~ normal(0, 1);
  sigma ~ normal(0, 2);
  to_vector(eta_z) ~ std_normal();
  for (i in 1 : P) {
    array[len[i]] vector[2] y = ode_rk45_tol(pk_rhs, [dose[i], 0]', 0.0,
                                             segment(time, start[i], len[i]), rtol, atol,
                                             max_num_steps, ka[i], cl[i], v[i]);
    for (j in 1 : len[i]) {
      conc[start[i] + j - 1] ~ normal(y[j][2] / v[i], sigma);
    }
  }
}
