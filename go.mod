module github.com/puchi-dev/puchi

go 1.26.0
