library(testthat)
library(kerasbackup)

test_check("kerasbackup")
